"""Irodori on a real two-node Ray cluster on this machine: `colorize --ray` (Ray Data) and `serve --ray` (Ray Serve).

One cluster for the module: a head (`ray start --head`) and a second node joining it, one CPU and a small object
store each, with a token of their own; the tests stop exactly the processes they started. The guarantees the
retired `irodori broker` tests checked live here: no lost or misrouted replies with many clients, and a model
process killed mid-request costs its client at most a clear error while everything else completes.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend import protocol as P
from backend.tools.launcher import BackendProcess, child_env, free_port, start_serving
from helpers import line_art, reference, run_in_threads
from server_fixtures import check_marked, marked_line_art, png_bomb

pytest.importorskip("ray", reason="Ray is the optional extra `irodori[ray]` (`make test` installs it)")
pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).with_name("ray"))
OUTPUTS = ("color", "flats")


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (Ray's own processes carry the cluster's temp folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _children(pids: list[int]) -> list[int]:
    """`pids` and all their descendants (Ray's workers are children of its raylets)."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(pids), list(pids)
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


class RayCluster:
    """Head + one joining node, each `ray start` on free ports; stop() ends only these processes."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="irodori-ray-"))  # short: Ray's socket paths have a limit
        # a node that misses Ray's health checks is declared dead with its CPU; a shared 2-core test machine
        # can stall a raylet for many seconds, so the checks here tolerate a minute
        self.env = child_env({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                              "RAY_AUTH_TOKEN": secrets.token_hex(16), "OMP_NUM_THREADS": "1",
                              "MKL_NUM_THREADS": "1", "RAY_health_check_timeout_ms": "20000",
                              "RAY_health_check_failure_threshold": "6"})
        self.address = ""

    def start(self) -> None:
        head = self._start("--head", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
                           "--include-dashboard", "false", "--ray-client-server-port", str(free_port()),
                           "--temp-dir", str(self.temp))
        # Ray swaps 127.0.0.1 for the machine's address; the node joins wherever the head says it listens
        self.address = re.search(r"--address='([^']+)'", head).group(1)
        self._start("--address", self.address)

    def _start(self, *args: str) -> str:
        """`ray start ARGS`; tried twice, as a raylet on a loaded machine may miss Ray's fixed 30 s to register."""
        for attempt in range(2):
            ports = [a for name in ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                    "--metrics-export-port", "--runtime-env-agent-port")
                     for a in (name, str(free_port()))]
            done = subprocess.run([RAY, "start", *args, "--num-cpus", "1", "--object-store-memory",
                                   str(80 * 1024 ** 2), "--include-log-monitor", "false", "--disable-usage-stats",
                                   *ports], env=self.env, capture_output=True, text=True, timeout=180)
            if done.returncode == 0 or attempt:
                break
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def stop(self) -> None:
        pids = _children(_pids_with(str(self.temp)))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
                time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _sleeping(pid: int) -> bool:
    """Whether a thread of `pid` sleeps a replica's `--delay-ms` (a request in flight): it is named so meanwhile."""
    from backend.service.ray_serve import DELAY_THREAD_NAME

    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return any(Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == DELAY_THREAD_NAME for t in tasks)
    except OSError:  # it ended, or a thread did
        return False


def _kill_one(title: str, timeout: float = 60.0, poll: float = 0.1, busy: bool = False) -> int:
    """SIGKILL one Ray worker process whose title contains `title` (as a crash would end it); `busy`: one
    that is in the middle of a request (see _sleeping)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in _pids_with(title) if p != os.getpid() and (not busy or _sleeping(p))]
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(poll)
    raise AssertionError(f"no process {title!r} to kill")


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


# ========================================================================================= no Ray unless asked
def test_plain_colorize_and_serve_do_not_import_ray(tiny_checkpoint, tmp_path):
    from backend.inference.imageio import save_image

    save_image(tmp_path / "a.png", line_art(32, 40))
    save_image(tmp_path / "ref.png", reference())
    code = ("import sys; from backend.tools.cli import main; "
            f"rc = main(['colorize', {str(tmp_path / 'a.png')!r}, '-r', {str(tmp_path / 'ref.png')!r}, '-o', "
            f"{str(tmp_path / 'out')!r}, '--checkpoint', {str(tiny_checkpoint)!r}, '--device', 'cpu']); "
            "import backend.tools.serve, backend.service.server; "
            "assert rc == 0 and 'ray' not in sys.modules, sorted(m for m in sys.modules if 'ray' in m)")
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


# ========================================================================================= batch on Ray Data
def test_batch_on_ray_equals_plain_survives_a_killed_actor_and_resumes(cluster, tiny_checkpoint, tmp_path):
    from backend.inference.imageio import load_image, save_image
    from backend.inference.pipeline import Colorizer

    sketches, out = tmp_path / "sketches", tmp_path / "out"
    for i in range(10):
        save_image(sketches / f"frame{i:02d}.png", line_art(40 + 2 * i, 56, seed=i))
    save_image(tmp_path / "ref.png", reference())
    cmd = ["colorize", str(sketches), "-r", str(tmp_path / "ref.png"), "-o", str(out), "--checkpoint",
           str(tiny_checkpoint), "--device", "cpu", *[a for o in OUTPUTS for a in ("--output", o)],
           "--ray", cluster.address, "--ray-actors", "1"]

    # the one model actor is killed while frames are in flight: Ray Data starts another, the batch finishes
    job = BackendProcess(*cmd, "--ray-delay-ms", "700", env=cluster.env)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*_color.png")):
            assert job.proc.poll() is None, job.log[-3000:]
            assert time.monotonic() < deadline, job.log[-3000:]
            time.sleep(0.1)
        _kill_one("MapWorker(MapBatches(_ColourActor))")
        assert job.wait(150) == 0, job.log[-3000:]
    finally:
        job.stop()
    assert "done 10, skipped 0 (outputs exist), failed 0" in job.log, job.log[-3000:]

    colorizer = Colorizer(tiny_checkpoint, device="cpu")  # what plain `irodori colorize` runs
    ref = load_image(tmp_path / "ref.png")
    stamps = {}
    for sketch in sorted(sketches.iterdir()):
        expected = colorizer.colorize(load_image(sketch), ref, OUTPUTS)
        for name in OUTPUTS:
            target = out / f"{sketch.stem}_{name}.png"
            np.testing.assert_array_equal(_read(target), expected[name], err_msg=str(target))
            stamps[target] = target.stat().st_mtime_ns
    assert sorted(p.name for p in out.iterdir()) == sorted(t.name for t in stamps)  # no temp file left over

    # a rerun finds every output and skips everything, touching nothing
    again = subprocess.run([sys.executable, "-m", "backend", *cmd], env=cluster.env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done 0, skipped 10 (outputs exist), failed 0" in again.stdout
    assert {t: t.stat().st_mtime_ns for t in stamps} == stamps


def test_keyframe_batch_on_ray_writes_what_plain_colorize_writes(cluster, tiny_checkpoint, tmp_path):
    """`--keyframe` works on Ray as in-process: the flats in the keyframe's colours and the unsure masks."""
    from backend.inference.imageio import load_image, save_image
    from backend.tools.cli import main as cli
    from training.eval_keyframes import sequence

    rendered, palette = sequence(10_000_001, 3, 160)  # a held-out character moving
    for i in (1, 2):
        save_image(tmp_path / "frames" / f"f{i}.png", rendered[i].line)
    save_image(tmp_path / "key_line.png", rendered[0].line)
    save_image(tmp_path / "key_colour.png", palette[rendered[0].mask])
    base = ["colorize", str(tmp_path / "frames"), "--keyframe", str(tmp_path / "key_line.png"),
            str(tmp_path / "key_colour.png"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert cli([*base, "-o", str(tmp_path / "local")]) == 0
    done = subprocess.run([sys.executable, "-m", "backend", *base, "-o", str(tmp_path / "ray"), "--ray",
                           cluster.address, "--ray-actors", "1"], env=cluster.env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "done 2, skipped 0 (outputs exist), failed 0" in done.stdout, done.stderr[-3000:]
    names = ["f1_flats.png", "f1_unsure.png", "f2_flats.png", "f2_unsure.png"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in names:
        assert np.array_equal(load_image(tmp_path / "ray" / name), load_image(tmp_path / "local" / name)), name


# ========================================================================================= bench --sections ray
def test_bench_ray_section_compares_both_paths_in_one_run(cluster, tiny_checkpoint, tmp_path):
    """The section runs end to end on a few tiny frames and prints its rows; no timing is asserted. (Before the
    serve test: that one's server is killed, and its replicas keep the cluster's CPUs.)"""
    import json

    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "backend", "bench", "--quick", "--sections", "ray", "--ray-frames",
                           "4", "--ray-address", cluster.address, "--checkpoint", str(tiny_checkpoint), "--device",
                           "cpu", "--json", str(out)], env=cluster.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())["ray"]
    assert r["frames"] == 4 and r["identical"], r  # Ray wrote exactly what the plain loop wrote
    assert r["ray"]["execution_s"] > 0
    assert r["overhead"] == pytest.approx(r["ray"]["wall_s"] / r["plain"]["wall_s"] - 1)
    for server in ("plain", "ray"):
        for clients in ("1", "16"):
            assert r["serve"][server][clients]["errors"] == 0 and r["serve"][server][clients]["images_per_s"] > 0
    assert "| ray batch | 4 frames 128x128, `colorize --ray`" in done.stdout, done.stdout
    assert "| ray serve | 16 client(s)" in done.stdout and "Ray's overhead over the plain loop" in done.stdout


def test_bench_ray_section_says_when_ray_is_missing(monkeypatch, capsys):
    from backend.tools.cli import main as cli

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds where it is not installed
    assert cli(["bench", "--sections", "ray"]) == 2
    assert "section ray needs Ray, which is not installed: `pip install 'irodori[ray]'`" in capsys.readouterr().err


# ========================================================================================= serve on Ray Serve
def test_serve_on_ray_many_clients_and_a_killed_replica(cluster, tiny_checkpoint):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = start_serving(endpoint, "serve", "--bind", endpoint, "--ray", cluster.address, "--replicas", "2",
                           "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--delay-ms", "300",
                           env=cluster.env, timeout=180)
    try:
        with P.Client(endpoint, timeout=30) as client:
            info = client.info()
            assert info["model"]["ray"]["replicas"] == [2, 2] and info["model"]["device"] == "cpu"
            # the front end refuses and words errors as the plain server does, before anything reaches Ray
            for call, code in [(lambda: client.request("explode"), "unknown_op"),
                               (lambda: client.colorize(png_bomb(20000, 20000), reference()), "too_large")]:
                with pytest.raises(P.IrodoriError) as err:
                    call()
                assert err.value.code == code, err.value.message

        ref = reference()
        results: dict[tuple[int, int], object] = {}
        answered = threading.Semaphore(0)

        def run(c: int) -> None:
            with P.Client(endpoint, timeout=120, transport="pyzmq" if c % 2 else "zmtp") as client:
                for i in range(5):
                    h, w = 30 + i, 30 + c
                    la, mark = marked_line_art(h, w, c * 5 + i)
                    try:
                        check_marked(client.colorize(la, ref, outputs=("color", "flattened")), h, w, mark)
                        results[c, i] = "ok"
                    except P.IrodoriError as exc:
                        results[c, i] = exc
                    answered.release()

        def killer() -> None:
            for _ in range(12):  # a replica dies while the run is well under way
                answered.acquire()
            # An answer comes back when its batch is done, and the replicas may sit idle until the front end
            # sends the next one: kill a replica while it sleeps its --delay-ms inside a request, so the kill
            # hits work in flight. (Ray's process title, "...handle_request...", lags: it can still name the
            # method on an idle replica; and other threads of an idle replica sleep too.)
            _kill_one("ServeReplica:irodori:Colorizer", poll=0.01, busy=True)

        k = threading.Thread(target=killer)
        k.start()
        run_in_threads(run, [(c,) for c in range(16)], timeout=240)
        k.join(30)
        assert len(results) == 80  # every request answered: nothing lost, and check_marked found no mix-up
        failed = {key: r for key, r in results.items() if r != "ok"}
        assert all(isinstance(r, P.IrodoriError) and r.code == "worker_lost" for r in failed.values()), failed
        assert len(failed) <= 2, failed  # at most the requests the dead replica held (each was retried once)
        # the kill hit work in flight: Ray's router sent it to the live replica, or we did ("sending it again")
        assert re.search("killed while executing a task|died during a request", server.log), server.log[-3000:]
        with P.Client(endpoint, timeout=60) as client:  # and the service goes on
            assert client.colorize(line_art(32, 40), ref)["color"].to_array().shape == (32, 40, 4)
    finally:
        server.stop()
