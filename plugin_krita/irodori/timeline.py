"""Keyframe arithmetic for colouring animated line art. Pure (tested outside Krita)."""
from __future__ import annotations


def shown_keyframe(times: list[int], now: int) -> int:
    """The keyframe Krita shows at time `now`: the last one at or before it, else the first one."""
    times = sorted(times)
    if not times:
        raise ValueError("no keyframes")
    past = [t for t in times if t <= now]
    return past[-1] if past else times[0]
