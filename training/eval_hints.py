"""`irodori eval --hints`: does a user's colour hint come out where it was put, and do the parts WITHOUT a hint
stay as good as they were? (issue 22; Zhang et al. 2017 measure user-guided colourisation the same way:
simulated hints drawn from the truth.)

Protocol (deterministic; the held-out characters, references, targets and per-part scoring of
training/eval.py):
- Every sketch/reference pair is coloured three times by the same model through the real pipeline
  (Colorizer.colorize_batch with each request's hints, "color" output):
    none   no hints;
    all    one hint per measured part (eval.part_pixels: mask eroded 1 px, 1 px from ink);
    half   hints on a random half (rounded down, at least one) of the measured parts.
  A hint is a DOT x DOT square of one colour, centred on a pixel drawn at random from the part's measured
  pixels (so the whole dot lies inside the part and off the ink), painted with the part's TRUE colour: the
  target's per-part median CIELAB colour (the colour scored), in sRGB. Randomness: numpy
  default_rng([HINT_SEED, sketch seed, reference 0|1]); a part hinted in `half` gets the same dot as in `all`.
- Figures: part CIEDE2000 (eval.py's definition: per part label over all pairs, then over labels) for
  `none` and `all` over every part; for `half`, over its UNHINTED parts, beside `none` over exactly the same
  (pair, part) entries, and over its hinted parts.
- Targets (issue 22): all <= 0.5 x none; half's unhinted parts no worse than none's same parts.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from backend.inference.colour import ciede2000, lab_to_rgb
from training.eval import part_colours, part_pixels
from training.eval_cases import Case, iter_cases

HINT_SEED = 22_022  # the dots' random stream (with the sketch seed and the reference index)
DOT = 3  # the side of a hint dot in pixels; part_pixels keeps a 3x3 neighbourhood inside the part
ALL_RATIO_TARGET = 0.5

# (sketches, references, hints: RGBA uint8 (S,S,4) or None) -> colour images (S,S,3) uint8, one per request
HintColorFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray | None]], list[np.ndarray]]


def check_hint_model(colorizer) -> None:
    """A clear error before any work when the model cannot read hints (the pipeline would refuse them)."""
    if not colorizer.config.hint_channels:
        raise ValueError(f"{colorizer.name} was trained without colour hints (model.hint_channels 0): "
                             "--hints needs a model trained with model.hint_channels 4")


def colorizer_hint_fn(colorizer, size: int, batch: int = 8) -> HintColorFn:
    """A Colorizer as a HintColorFn: the real pipeline, `batch` requests (each with its hints) per call."""
    check_hint_model(colorizer)

    def fn(lines, references, hints):
        requests = [(line, ref, ("color",), size, hint) for line, ref, hint in zip(lines, references, hints)]
        out: list[np.ndarray] = []
        for start in range(0, len(requests), batch):
            out += [r["color"] for r in colorizer.colorize_batch(requests[start:start + batch])]
        return out

    return fn


def hint_image(shape: tuple[int, int], colours: dict[int, np.ndarray], centres: dict[int, int]) -> np.ndarray:
    """An RGBA hint layer: a DOT x DOT square of `colours[label]` (uint8 RGB) centred on the flat index
    `centres[label]` for every label in `colours`; transparent elsewhere."""
    out = np.zeros((*shape, 4), np.uint8)
    r = DOT // 2
    for label, rgb in colours.items():
        y, x = divmod(int(centres[label]), shape[1])
        out[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = (*rgb, 255)
    return out


def draw_hints(case: Case, k: int, parts: dict[int, np.ndarray],
               target_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(hints on every part, hints on a random half, the labels hinted in the half) for reference k."""
    rng = np.random.default_rng([HINT_SEED, case.seed, k])
    labels = list(parts)
    centres = {label: int(rng.choice(parts[label])) for label in labels}
    rgb = {label: lab_to_rgb(lab) for label, lab in zip(labels, target_lab)}
    half = sorted(int(x) for x in rng.choice(labels, size=max(1, len(labels) // 2), replace=False))
    shape = case.line.shape
    return hint_image(shape, rgb, centres), hint_image(shape, {h: rgb[h] for h in half}, centres), half


def _mean_by_label(errors: dict[int, list[float]]) -> float:
    """Mean per part label, then over labels (eval.py's averaging); NaN when nothing was measured."""
    per_label = [float(np.mean(v)) for v in errors.values() if v]
    return float(np.mean(per_label)) if per_label else float("nan")


def evaluate_hints(model, cases: Iterable[Case] | None = None, *, seeds: Sequence[int] | None = None,
                   size: int | None = None, palette_seeds: Sequence[int] | None = None,
                   reference_size: int | None = None, batch: int = 8,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Score the three hint cases; `model` is a Colorizer (trained with hint channels) or a HintColorFn.
    Cases are `cases`, else rendered from `seeds` at `size` (default: a Colorizer's resolution)."""
    if hasattr(model, "colorize"):
        size = size or model.config.resolution
        reference_size = reference_size or model.config.reference_size
        fn: HintColorFn = colorizer_hint_fn(model, size, batch)
    elif callable(model):
        fn = model
    else:
        raise TypeError("model must be a Colorizer or a callable (sketches, references, hints) -> colour images")
    if cases is None:
        if seeds is None or size is None:
            raise ValueError("give cases, or seeds and a size")
        total = len(seeds)
        cases = iter_cases(seeds, size, palette_seeds, reference_size)
    else:
        cases = list(cases)
        total = len(cases)
    none_err: dict[int, list[float]] = {}
    all_err: dict[int, list[float]] = {}
    unhinted: dict[int, list[float]] = {}  # `half` on the parts it left without a hint
    unhinted_none: dict[int, list[float]] = {}  # `none` on exactly those (pair, part) entries
    hinted: dict[int, list[float]] = {}  # `half` on the parts it hinted
    seen: list[int] = []
    pairs = 0
    for case in cases:
        parts = part_pixels(case)
        if not parts:
            continue
        lines, refs, hints, halves, targets = [], [], [], [], []
        for k, (ref, target) in enumerate(zip(case.references, case.targets)):
            t_lab = part_colours(target, parts)
            every, half, half_labels = draw_hints(case, k, parts, t_lab)
            lines += [case.line] * 3
            refs += [ref] * 3
            hints += [None, every, half]
            halves.append(half_labels)
            targets.append(t_lab)
        outputs = fn(lines, refs, hints)
        for k, (t_lab, half_labels) in enumerate(zip(targets, halves)):
            errs = []
            for out in outputs[3 * k:3 * k + 3]:
                if out.shape != (*case.line.shape, 3) or out.dtype != np.uint8:
                    raise ValueError(f"a model output is {out.shape} {out.dtype}; expected {(*case.line.shape, 3)} uint8")
                errs.append(ciede2000(part_colours(out, parts), t_lab))
            for j, label in enumerate(parts):
                none_err.setdefault(label, []).append(float(errs[0][j]))
                all_err.setdefault(label, []).append(float(errs[1][j]))
                if label in half_labels:
                    hinted.setdefault(label, []).append(float(errs[2][j]))
                else:
                    unhinted.setdefault(label, []).append(float(errs[2][j]))
                    unhinted_none.setdefault(label, []).append(float(errs[0][j]))
            pairs += 1
        seen.append(case.seed)
        if progress is not None:
            progress(len(seen), total)
    if not seen:
        raise ValueError("no case had a measurable part")
    none, every = _mean_by_label(none_err), _mean_by_label(all_err)
    half_unhinted, same_none = _mean_by_label(unhinted), _mean_by_label(unhinted_none)
    return {
        "cases": {
            "none": {"part_de00": none},
            "all": {"part_de00": every},
            "half": {"unhinted_part_de00": half_unhinted, "same_parts_without_hints_de00": same_none,
                     "hinted_part_de00": _mean_by_label(hinted)},
        },
        "ratios": {"all_vs_none": every / none if none > 0 else float("nan"),
                   "half_unhinted_vs_none": half_unhinted / same_none if same_none > 0 else float("nan")},
        "targets": {"all_vs_none_at_most": ALL_RATIO_TARGET, "half_unhinted_no_worse": True,
                    "all_met": bool(every <= ALL_RATIO_TARGET * none),
                    "half_met": bool(half_unhinted <= same_none)},
        "protocol": {"characters": len(seen), "pairs": pairs, "seeds": seen, "dot_px": DOT, "hint_seed": HINT_SEED,
                     "hint_colour": "the target's per-part median CIELAB colour, as sRGB",
                     "half": "a random half (rounded down, at least one) of the measured parts"},
    }


def format_table(result: dict) -> str:
    """The hint figures as a plain-text table, with the issue's targets."""
    c, r, t = result["cases"], result["ratios"], result["targets"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return "\n".join([
        f"{'colour hints':38} {'part dE00 (lower)':>18}",
        f"{'(a) no hints':38} {c['none']['part_de00']:18.2f}",
        f"{'(b) one hint per part':38} {c['all']['part_de00']:18.2f}   "
        f"{r['all_vs_none']:.3f}x (a), target <= {t['all_vs_none_at_most']}x: {met(t['all_met'])}",
        f"{'(c) half the parts: unhinted parts':38} {c['half']['unhinted_part_de00']:18.2f}   "
        f"{r['half_unhinted_vs_none']:.3f}x the same parts in (a) "
        f"({c['half']['same_parts_without_hints_de00']:.2f}), target no worse: {met(t['half_met'])}",
        f"{'(c) half the parts: hinted parts':38} {c['half']['hinted_part_de00']:18.2f}",
    ])
