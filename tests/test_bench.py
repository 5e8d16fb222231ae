"""`irodori bench --quick`: every section runs end to end on tiny settings and reports its figures.

No timing is asserted (speed belongs in the benchmark's own table); the test checks that each section ran
for real: servers answered, children measured memory, figures are positive and consistent with each other.
"""
from __future__ import annotations

import json
import math

import pytest

from backend.tools import extensions
from backend.tools.bench import children, report
from backend.tools.bench.plan import QUICK
from backend.tools.cli import main as cli


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "bench.json"
    assert cli(["bench", "--quick", "--json", str(out), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    plan = QUICK

    assert res["machine"]["cpu"] and res["machine"]["torch"] and res["machine"]["logical_cores"] >= 1
    assert res["table"] in printed and printed.count("\n|") >= 20  # one markdown table, printed

    # (a) the limit: both kernels per dtype, fp32 always
    assert "fp32" in res["peak"]
    for p in res["peak"].values():
        for key in ("matmul_gflops", "conv_gflops", "conv_channels_last_gflops", "peak_gflops"):
            assert p[key] > 0, key
        assert p["peak_gflops"] == max(p["matmul_gflops"], p["conv_gflops"], p["conv_channels_last_gflops"])

    # (b) the generator: counted FLOPs grow 4x per doubling of the side; fractions are of the same run's peak
    gen = res["generator"]
    assert {g["size"] for g in gen} == set(plan.gen_sizes)
    small, big = (next(g for g in gen if g["size"] == s and g["variant"] == "fp32 NCHW") for s in plan.gen_sizes)
    assert math.isclose(big["gflop"] / small["gflop"], (big["size"] / small["size"]) ** 2, rel_tol=0.05)
    for g in gen:
        assert g["median_ms"] > 0 and g["gflops"] > 0
        assert math.isclose(g["fraction_of_peak"], g["gflops"] / res["peak"][g["dtype"]]["peak_gflops"])

    # (c) the pipeline in fresh subprocesses: the tiny model's resolution run plus each size
    pipe = {p["size"]: p for p in res["pipeline"]}
    assert set(plan.pipeline_sizes) <= set(pipe) and 32 in pipe and pipe[32]["is_model_resolution"]
    for p in pipe.values():
        assert p["median_ms"] > 0 and p["model_ms"] > 0 and p["resize_ms"] >= 0
        assert p["peak_rss_mib"] >= p["setup_peak_rss_mib"] > 100  # torch and VGG19 are in there
        assert p["model"] and p["model_resolution"] == 32
    assert pipe[plan.pipeline_sizes[-1]]["big_ratio"] > 0

    # flats beside the pipeline at the same sizes
    assert [f["size"] for f in res["flats"]] == list(plan.pipeline_sizes)
    assert all(f["flats_s"] > 0 and f["regions"] > 0 and f["pct_of_pipeline"] > 0 for f in res["flats"])

    # (d) a real server answered every size (shared memory and raw frames, plus PNG at the first size)
    transport = res["transport"]
    first = plan.pipeline_sizes[0]
    assert [(t["size"], t["format"]) for t in transport] == [
        (first, "shm"), (first, "raw"), (first, "png"),
        *[(s, f) for s in plan.pipeline_sizes[1:] for f in ("shm", "raw")]]
    for t in transport:
        assert t["roundtrip_ms"] > t["server_colorize_ms"] > 0  # the round trip contains the server's work
        assert t["in_process_ms"] > 0
        assert math.isclose(t["overhead_ms"], t["roundtrip_ms"] - t["in_process_ms"])

    # (e) every request of every cell answered, batching off and on
    cells = {(c["batching"], c["clients"]): c for c in res["concurrency"]}
    assert set(cells) == {(b, n) for b in ("off", "on") for n in plan.clients}
    for (batching, n), c in cells.items():
        assert c["errors"] == 0 and c["images"] == n * math.ceil(plan.concurrent_requests / n)
        assert c["rounds"] == len(c["images_per_s_rounds"]) == plan.concurrency_rounds
        assert c["images_per_s"] > 0 and c["max_batch"] == (1 if batching == "off" else 4)

    # (f) training at both configurations: the plug-in section from training/bench.py
    assert [t["config"] for t in res["training"]] == ["tiny", "paper"]
    assert all(t["step_ms"] > 0 and t["images_per_s"] > 0 for t in res["training"])

    names = " ".join(t["name"] for t in res["targets"])
    for word in ("generator", "transport 256x256 shm", "peak RSS", "flats", "throughput"):
        assert word in names


def test_bad_arguments_are_refused_clearly(tmp_path, capsys):
    assert cli(["bench", "--sections", "peak,sparkles"]) == 2
    assert "unknown section(s) sparkles" in capsys.readouterr().err
    assert cli(["bench", "--checkpoint", str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_table_lists_every_section_it_is_given():
    res = {
        "peak": {"fp32": {"matmul": "8x8x8", "conv": "3x3", "matmul_gflops": 10.0, "conv_gflops": 20.0,
                          "conv_channels_last_gflops": 30.0, "peak_gflops": 30.0, "peak_cpu_gflops": None}},
        "generator": [{"size": 512, "variant": "fp32 channels_last", "dtype": "fp32", "median_ms": 100.0,
                       "gflop": 1.5, "gflops": 15.0, "fraction_of_peak": 0.5}],
        "concurrency": [{"batching": "on", "clients": 4, "size": 64, "median_latency_ms": 5.0, "images_per_s": 2.0,
                         "images": 16, "errors": 0, "vs_single_client": 0.8}],
    }
    text = report.table(res)
    assert "| (a) limit | conv fp32 3x3" in text and "peak fp32: 30 GFLOP/s" in text
    assert "50% of fp32 peak" in text and "0.80x of 1 client" in text
    found = {t["name"].split(" ")[0]: t["met"] for t in report.targets(res)}
    assert found == {"generator": False, "throughput": False}  # 50% < 60%, and 0.8x < 1x


def test_more_clients_may_match_one_client_within_its_own_noise():
    def run(ratio: float) -> bool:
        conc = [{"batching": "off", "clients": 1, "images_per_s": 5.0, "images_per_s_rounds": [5.0, 5.1, 4.95],
                 "vs_single_client": 1.0},
                {"batching": "off", "clients": 16, "images_per_s": 5.0 * ratio, "vs_single_client": ratio}]
        (target,) = report.targets({"concurrency": conc})
        assert "spread 3.0%" in target["name"]
        return target["met"]

    assert run(1.02) and run(0.98)  # inside the single-client rounds' 3% spread
    assert not run(0.96)  # below it by more than the noise


def test_bench_flats_reports_time_and_memory():
    r = children.bench_flats(96, repeats=1)
    assert r["size"] == 96 and r["regions"] > 1
    for key in ("segment_s", "fill_s", "flats_s", "flats_cpu_s", "shading_s", "peak_mib", "maxrss_mib"):
        assert r[key] > 0, key


def test_the_training_section_is_a_plug_in_and_a_missing_one_is_named(monkeypatch, capsys):
    assert extensions.find(extensions.BENCH_SECTIONS)["training"] == "training.bench"
    monkeypatch.setattr(extensions, "find", lambda group: {"training": "training.no_such_module"})
    assert cli(["bench", "--sections", "training", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'training' comes from training.no_such_module" in err and "irodori.bench" in err
