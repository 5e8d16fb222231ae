"""A full server queue (`busy`): batch clients wait their turn within their timeout, a single request hears it at once."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from backend import protocol as P
from helpers import free_port, line_art, reference, run_in_threads
from server_fixtures import Process, start_server

QUEUE = 4  # the real server's --queue-size: 3 clients x 16 jobs keep far more than this in flight


def test_three_batch_jobs_against_one_small_queue_all_finish(tiny_checkpoint, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    for k in range(20):
        Image.fromarray(line_art(40, 48 + 4 * (k % 3), seed=k)).save(sketches / f"s{k:02d}.png")
    ref = tmp_path / "ref.png"
    Image.fromarray(reference()).save(ref)
    common = ("colorize", str(sketches), "--reference", str(ref))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    # --delay-ms holds each batch back, so the queue stays full while the three jobs send
    server = start_server(endpoint, tiny_checkpoint, "--queue-size", str(QUEUE), "--max-batch", "4",
                          "--delay-ms", "50", "-v")
    try:
        jobs = [Process(*common, "--out", str(tmp_path / f"out{j}"), "--server", endpoint, "--jobs", "16",
                        "--timeout", "90") for j in range(3)]
        codes = [job.wait(150) for job in jobs]
        assert codes == [0, 0, 0], "\n\n".join(job.log[-2000:] for job in jobs)
    finally:
        for job in locals().get("jobs", []):
            job.stop()
        server.stop()
    assert "busy" in server.log  # the queue really overflowed: the jobs finished by waiting, not by luck
    local = Process(*common, "--out", str(tmp_path / "local"), "--checkpoint", str(tiny_checkpoint),
                    "--device", "cpu")
    assert local.wait(150) == 0, local.log[-2000:]
    for k in range(20):
        alone = np.asarray(Image.open(tmp_path / "local" / f"s{k:02d}_color.png"))
        for j in range(3):
            served = np.asarray(Image.open(tmp_path / f"out{j}" / f"s{k:02d}_color.png"))
            assert np.array_equal(served, alone), (j, k, np.abs(served.astype(int) - alone).max())


@pytest.fixture
def full_server(colorizer_for_busy):
    """An in-process server holding one running and one queued request for 6 s: the next one is `busy`.

    The occupiers wait patiently themselves: on a loaded machine the second can arrive while the first is
    still queued, and a plain call would then hear `busy` and leave the server never full."""
    from backend.service.server import Server, ServerConfig

    srv = Server(colorizer_for_busy, ServerConfig(bind="tcp://127.0.0.1:*", queue_size=1, max_batch=1,
                                                  delay_ms=6000))
    thread = srv.start_thread()
    la, ref = line_art(32, 32), reference()

    def occupy() -> None:
        with P.Client(srv.endpoint, timeout=60) as client:
            client.colorize_patiently(la, ref)

    occupiers = [threading.Thread(target=occupy, daemon=True) for _ in range(2)]
    try:
        for t in occupiers:
            t.start()
        with P.Client(srv.endpoint, timeout=10) as client:
            def full() -> bool:  # one queued, and still one a moment later: the other one is running
                if client.ping()["queued"] != 1:
                    return False
                time.sleep(0.3)
                return client.ping()["queued"] == 1

            deadline = time.monotonic() + 20
            while not full():
                assert time.monotonic() < deadline, "the two requests never filled the server"
                time.sleep(0.05)
        yield srv.endpoint, la, ref
    finally:
        srv.stop()
        thread.join(30)
        for t in occupiers:
            t.join(30)


@pytest.fixture(scope="module")
def colorizer_for_busy(tiny_checkpoint):
    from backend.inference.pipeline import Colorizer

    return Colorizer(tiny_checkpoint, device="cpu")


def refused(endpoint: str, timeout: float, call: str, la, ref) -> tuple[P.IrodoriError, float]:
    """The error `Client.<call>(la, ref)` raises, and how many seconds it took to come."""
    with P.Client(endpoint, timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(P.IrodoriError) as err:
            getattr(client, call)(la, ref)
        return err.value, time.monotonic() - start


def test_a_single_interactive_request_hears_busy_at_once(full_server):
    endpoint, la, ref = full_server
    error, took = refused(endpoint, 30, "colorize", la, ref)
    assert error.code == "busy" and took < 1.0, (error, took)


def test_a_batch_request_gives_up_with_a_clear_busy_error_when_its_timeout_runs_out(full_server):
    endpoint, la, ref = full_server
    error, took = refused(endpoint, 1.5, "colorize_patiently", la, ref)
    assert error.code == "busy", error
    assert 0.5 < took <= 1.6, took  # it waited and resent, but never past its timeout
    assert "resent the request" in error.message and "timeout being 1.5 s" in error.message
    assert "queue is full" in error.message  # the server's own words come first


def test_colorize_many_reports_busy_at_once_when_asked_to(full_server):
    endpoint, la, ref = full_server
    start = time.monotonic()
    outcomes = list(P.colorize_many(lambda: P.Client(endpoint, timeout=30), [{"lineart": la, "reference": ref}],
                                    retry_busy=False))
    assert [o.code for _, o in outcomes] == ["busy"] and time.monotonic() - start < 1.0


def test_cancel_ends_a_busy_wait_at_once(full_server):
    endpoint, la, ref = full_server
    codes: list = []
    with P.Client(endpoint, timeout=30) as client:
        def wait_patiently() -> None:
            try:
                client.colorize_patiently(la, ref)
            except P.IrodoriError as exc:
                codes.append(exc.code)

        timer = threading.Timer(0.5, client.cancel)
        start = time.monotonic()
        timer.start()
        run_in_threads(wait_patiently, timeout=10)
        took = time.monotonic() - start
        timer.join()
    assert codes == ["cancelled"] and took < 1.5, (codes, took)
