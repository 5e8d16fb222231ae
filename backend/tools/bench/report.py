"""The report of a bench run: one markdown table, and the issue's targets checked on the same run's figures."""
from __future__ import annotations

import math
from typing import Any, Mapping

TARGETS = {
    "generator_fraction": 0.60,  # generator at 512 px: at least this fraction of the dtype's peak (CPU)
    "transport_pct": 5.0,  # server round trip at 2048: at most this % over the in-process pipeline
    "rss_4096_mib": 4096.0,  # peak RSS of a 4096^2 request
    "big_ratio": 1.5,  # 4096^2 time / (model-resolution time + resize work)
    "flats_pct": 25.0,  # flats add at most this % to the pipeline's time at 2048 (CPU)
    "hints_pct": 5.0,  # colour hints add at most this % to a 2048 request (CPU)
}


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table(res: dict, plugins: Mapping[str, Any] = {}) -> str:
    """One markdown table: section | scenario | median ms | figure | against the limit or a target.

    `plugins`: section name -> its plug-in module, which turns its own results into rows (command.py)."""
    rows: list[tuple[str, ...]] = []
    for dt, p in res.get("peak", {}).items():
        cpu = f" (CPU time: {fmt(p['peak_cpu_gflops'])})" if p.get("peak_cpu_gflops") else ""
        rows.append(("(a) limit", f"matmul {dt} {p['matmul']}", "", f"{fmt(p['matmul_gflops'])} GFLOP/s", ""))
        rows.append(("(a) limit", f"conv {dt} {p['conv']}, NCHW / channels_last", "",
                     f"{fmt(p['conv_gflops'])} / {fmt(p['conv_channels_last_gflops'])} GFLOP/s",
                     f"peak {dt}: {fmt(p['peak_gflops'])} GFLOP/s{cpu}"))
    for g in res.get("generator", []):
        if "error" in g:
            rows.append(("(b) generator", f"{g['size']} px {g['variant']}", "-", g["error"], ""))
            continue
        note = f"{_pct(g['fraction_of_peak'])} of {g['dtype']} peak"
        if g.get("cpu_fraction_of_peak") is not None:
            note += f" (CPU time: {_pct(g['cpu_fraction_of_peak'])})"
        if "compile_s" in g:
            note += f"; compiling took {g['compile_s']:.0f} s"
        rows.append(("(b) generator", f"{g['size']} px {g['variant']}", fmt(g["median_ms"], 1),
                     f"{g['gflop']:.1f} GFLOP, {fmt(g['gflops'])} GFLOP/s", note))
    for p in res.get("pipeline", []):
        size = p["size"]
        what = "line art at the model's resolution" if p.get("is_model_resolution") else "RGBA line art"
        note = (f"prepare {fmt(p['prepare_ms'])} + model {fmt(p['model_ms'])} + finish {fmt(p['finish_ms'])} ms; "
                f"the two resizes alone {fmt(p['resize_ms'])} ms")
        if "big_ratio" in p:
            note += f"; {p['big_ratio']:.2f}x of (model-resolution run + resizes)"
        mem = (f"peak RSS {fmt(p['peak_rss_mib'])} MiB (set-up {fmt(p['setup_peak_rss_mib'])}, "
               f"during requests {fmt(p['request_peak_rss_mib'])})")
        if "cuda_peak_mib" in p:
            mem += f", CUDA peak {fmt(p['cuda_peak_mib'])} MiB"
        rows.append(("(c) pipeline", f"{size}x{size} {what}", fmt(p["median_ms"]), mem, note))
    for fl in res.get("flats", []):
        note = (f"a request with flats: {fmt(fl['pipeline_ms'])} -> {fmt(fl['pipeline_flats_ms'])} ms, "
                f"{fl['added_pct']:+.0f}% (same process, interleaved; segmentation overlaps the model); the same "
                f"line art again: {fmt(fl['pipeline_flats_warm_ms'])} ms, {fl['added_warm_pct']:+.0f}%; "
                f"alone they would add {fl['pct_of_pipeline']:.0f}% to (c)" if fl.get("pct_of_pipeline") is not None else "")
        rows.append(("flats", f"{fl['size']}x{fl['size']} segment + fill", fmt(fl["flats_s"] * 1e3),
                     f"{fl['regions']} regions; +{fmt(fl['peak_mib'])} MiB traced, peak RSS "
                     f"{fmt(fl['peak_rss_mib'])} MiB", note))
    for h in res.get("hints", []):
        figure = (f"without hints {fmt(h['plain_ms'])} ms: {h['added_pct']:+.1f}% (CPU time "
                  f"{fmt(h['plain_cpu_ms'])} -> {fmt(h['hints_cpu_ms'])} ms: {h['added_cpu_pct']:+.1f}%)")
        rows.append(("hints", f"{h['size']}x{h['size']} request ({' + '.join(h['outputs'])}) with {h['dots']} hint "
                     "dots", fmt(h["hints_ms"]), figure,
                     f"medians of {h['rounds']} interleaved rounds, same process, regions cache emptied each time"))
    for t in res.get("transport", []):
        vs = f"{t['overhead_ms']:+,.0f} ms = {t['overhead_pct']:+.1f}% vs in-process ({fmt(t['in_process_ms'])} ms)"
        how = {"shm": "raw pixels in shared memory", "raw": "raw frames", "png": "PNG frames"}[t["format"]]
        rows.append(("(d) transport", f"{t['size']}x{t['size']} {how}, loopback",
                     fmt(t["roundtrip_ms"]), vs,
                     f"same request: {t['same_request_overhead_ms']:+,.0f} ms = "
                     f"{t['same_request_overhead_pct']:+.1f}% over the server's colorize (decode "
                     f"{fmt(t['server_decode_ms'])}, encode {fmt(t['server_encode_ms'])}, wire and client "
                     f"{fmt(t['wire_and_client_ms'])} ms)"))
    for c in res.get("concurrency", []):
        rows.append(("(e) throughput", f"{c['clients']} client(s), batching {c['batching']}, "
                     f"{c['size']}x{c['size']}", fmt(c["median_latency_ms"]),
                     f"{c['images_per_s']:.2f} images/s ({c['images']} images, {c['errors']} errors)",
                     f"{c['vs_single_client']:.2f}x of 1 client"))
    for name, section in plugins.items():
        rows += section.table_rows(res.get(name, []))
    head = ("section", "scenario", "median ms", "figure", "against the limit")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def targets(res: dict) -> list[dict]:
    """The issue's targets on this run's figures (benchmark figures to watch, not tests)."""
    out = []
    gen = [g for g in res.get("generator", []) if "error" not in g]
    if gen:
        size = 512 if any(g["size"] == 512 for g in gen) else max(g["size"] for g in gen)
        for dtype in sorted({g["dtype"] for g in gen}):
            best = max((g for g in gen if g["size"] == size and g["dtype"] == dtype),
                       key=lambda g: g["fraction_of_peak"])
            out.append({"name": f"generator {size} px {dtype} ({best['variant']}): fraction of the {dtype} peak",
                        "value": best["fraction_of_peak"], "cpu_time_value": best.get("cpu_fraction_of_peak"),
                        "target": f">= {TARGETS['generator_fraction']}",
                        "met": best["fraction_of_peak"] >= TARGETS["generator_fraction"]})
    sizes = [p["size"] for p in res.get("pipeline", []) if not p.get("is_model_resolution")]
    first = [t for t in res.get("transport", []) if sizes and t["size"] == sizes[0]]
    for t in first[:1]:  # the default local path: shared memory where the OS has it, else raw frames
        out.append({"name": f"transport {t['size']}x{t['size']} {t['format']}: % over the in-process pipeline",
                    "value": t["overhead_pct"], "same_request_value": t["same_request_overhead_pct"],
                    "target": f"<= {TARGETS['transport_pct']}",
                    "met": t["overhead_pct"] <= TARGETS["transport_pct"]})
    for p in res.get("pipeline", []):
        if "big_ratio" in p:
            out.append({"name": f"{p['size']}x{p['size']}: peak RSS MiB", "value": p["peak_rss_mib"],
                        "target": f"<= {TARGETS['rss_4096_mib']:.0f}",
                        "met": p["peak_rss_mib"] <= TARGETS["rss_4096_mib"]})
            out.append({"name": f"{p['size']}x{p['size']}: time / (model-resolution run + resizes)",
                        "value": p["big_ratio"], "target": f"<= {TARGETS['big_ratio']}",
                        "met": p["big_ratio"] <= TARGETS["big_ratio"]})
    for fl in res.get("flats", []):
        if sizes and fl["size"] == sizes[0] and fl.get("pct_of_pipeline") is not None:
            out.append({"name": f"flats {fl['size']}x{fl['size']}: % a request with flats takes over one without",
                        "value": fl["added_pct"], "target": f"<= {TARGETS['flats_pct']}",
                        "met": fl["added_pct"] <= TARGETS["flats_pct"]})
    for h in res.get("hints", []):
        out.append({"name": f"hints {h['size']}x{h['size']}: % a request with hints takes over one without",
                    "value": h["added_pct"], "cpu_time_value": h["added_cpu_pct"],
                    "target": f"<= {TARGETS['hints_pct']}",
                    "met": h["added_pct"] <= TARGETS["hints_pct"]})
    conc = res.get("concurrency", [])
    if conc:
        fewest = min(c["clients"] for c in conc)
        worst = min([c for c in conc if c["clients"] > fewest] or conc, key=lambda c: c["vs_single_client"])
        # One request already fills a small CPU, so more clients can at best hold the single-client figure:
        # "below" means below it by more than the single-client rounds' own spread in this run.
        single = next(c for c in conc if c["batching"] == worst["batching"] and c["clients"] == fewest)
        rounds = single.get("images_per_s_rounds") or [single["images_per_s"]]
        noise = (max(rounds) - min(rounds)) / single["images_per_s"]
        out.append({"name": f"throughput with more clients / 1 client (worst: {worst['clients']} clients, batching "
                            f"{worst['batching']}; 1-client rounds spread {noise:.1%})",
                    "value": worst["vs_single_client"], "noise": noise, "target": ">= 1 - that spread",
                    "met": worst["vs_single_client"] >= 1.0 - noise})
    return out
