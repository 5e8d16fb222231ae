"""What one `irodori bench` run measures: the full plan and the quick one."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """What one run measures. QUICK keeps every section but makes each one small."""

    peak_repeats: int
    peak_min_ms: float  # each timed sample of a peak kernel loops it for at least this long
    matmul_n: int  # N for an N x N x N matmul
    conv: tuple[int, int]  # (channels, side) of a C->C 3x3 conv on (1, C, side, side)
    gen_sizes: tuple[int, ...]
    gen_repeats: int
    gen_compile: bool  # also time torch.compile (tens of seconds of compiling per size)
    pipeline_sizes: tuple[int, ...]
    pipeline_repeats: int
    flats_repeats: int
    flats_request_rounds: int  # interleaved rounds of requests without / with flats (a noisy difference)
    transport_repeats: int
    clients: tuple[int, ...]
    concurrent_size: int  # line-art side for (e)
    concurrent_requests: int  # requests per (clients, batching) cell and round, at least one per client
    concurrency_rounds: int  # the client counts take turns this many times; each reports its median round
    ray_frames: int  # frames of the ray section's batch (a section run only when named: it needs Ray)
    ray_size: int  # their line-art side


FULL = Plan(peak_repeats=7, peak_min_ms=300.0, matmul_n=2048, conv=(128, 128), gen_sizes=(256, 512, 1024),
            gen_repeats=5, gen_compile=True, pipeline_sizes=(2048, 4096), pipeline_repeats=5, flats_repeats=3,
            flats_request_rounds=9, transport_repeats=5, clients=(1, 4, 16), concurrent_size=1024,
            concurrent_requests=16, concurrency_rounds=3, ray_frames=200, ray_size=1024)
QUICK = Plan(peak_repeats=3, peak_min_ms=50.0, matmul_n=1024, conv=(128, 128), gen_sizes=(64, 128),
             gen_repeats=2, gen_compile=False, pipeline_sizes=(256, 512), pipeline_repeats=2, flats_repeats=1,
             flats_request_rounds=2, transport_repeats=2, clients=(1, 4, 16), concurrent_size=128,
             concurrent_requests=16, concurrency_rounds=1, ray_frames=8, ray_size=128)
