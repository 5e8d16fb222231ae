"""`irodori serve --ray`: the ZeroMQ front end unchanged, the model in a Ray Serve deployment of N replicas.

The front end (server.py) still validates every request, answers ping, info and errors itself, and keeps its
bounded queue ("busy"); its model thread (batches.py) hands a batch to `RayColorizer.colorize_batch`, which
sends every request of it to the deployment at once (Ray's router spreads them over the replicas; queued
requests drive the autoscaler) and gathers the answers. Decoded pixels travel to the replicas and back through
Ray's object store, so replicas may run on any machine of the cluster.

A replica that dies mid-request (its process or machine gone) makes Ray raise an actor error: that request is
sent once more (Ray's controller starts a new replica meanwhile, the others keep serving); a second loss is
answered with the protocol's `worker_lost` error. Nothing here is imported unless `--ray` is given.

Ray moves arguments between its processes with its own serialisation (pickle): that is the cluster's trusted
inside. What arrives from the network is the ZeroMQ protocol only, checked before anything reaches Ray.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backend import protocol as P

log = logging.getLogger("irodori.serve")
APP = "irodori"  # the Ray Serve application name
# Ray starts its workers at niceness +15, so a model actor loses its cores to anything else on the machine;
# the model is the job here: its actors run at the node's own priority, as a plain `irodori serve` would
MODEL_ACTOR_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}
# While a replica sleeps its --delay-ms inside a request, the sleeping thread bears this name (Linux: in
# /proc/PID/task/TID/comm), so a test can kill a replica in the middle of a request: Ray's process title lags.
DELAY_THREAD_NAME = "irodori-delay"


def connect(address: str | None, num_cpus: int | None = None) -> dict:
    """Join the Ray cluster at `address`, or start a local Ray inside this process (None). Returns the cluster's
    resources. The dashboard and Ray's usage report stay off: the command must work on a machine with no net."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: install it with `pip install 'irodori[ray]'`") from None

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    return ray.cluster_resources()


@dataclass(frozen=True)
class RayServeConfig:
    address: str | None = None  # None: a local Ray inside this process
    replicas: int = 1  # started at once, and the least the autoscaler keeps
    max_replicas: int | None = None  # the autoscaler adds replicas up to this (default: replicas, no scaling)
    gpus: float | None = None  # per replica; None: 1 where the cluster has GPUs, else 0
    cpus: float = 1.0  # per replica, for Ray's scheduler
    threads: int = 0  # torch threads per replica (0: the replica machine's cores, as a plain server uses)
    retries: int = 1  # times a request lost with its replica is sent again
    request_timeout_s: float = 600.0  # a replica that never answers: the request fails instead of hanging


class ColourReplica:
    """One Colorizer in one Ray actor. Ray Serve may call it from several threads: a lock keeps the model to
    one request at a time (the Colorizer is not thread-safe) while the next request's pixels already arrive."""

    def __init__(self, checkpoint: str | None, device: str, bf16: bool, limits: P.Limits, threads: int,
                 delay_ms: float) -> None:
        import torch

        from backend.inference.pipeline import Colorizer

        # Ray sets a 1-CPU actor's OMP_NUM_THREADS to 1: that would halve a CPU replica's speed
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        self.colorizer = Colorizer(checkpoint, device=device, bf16=bf16, limits=limits)
        self.delay_ms = delay_ms
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"info": self.colorizer.info, "config": self.colorizer.config, "untrained": self.colorizer.untrained,
                "pid": os.getpid()}

    def colorize(self, lineart: np.ndarray, reference: np.ndarray, outputs: tuple, resolution: int | None,
                 hints: np.ndarray | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            if self.delay_ms:
                _named_sleep(self.delay_ms / 1e3, DELAY_THREAD_NAME)
            extra = {} if hints is None else {"hints": hints}  # a model without hints is never asked about them
            return self.colorizer.colorize(lineart, reference, outputs, resolution, **extra)


def _named_sleep(seconds: float, name: str) -> None:
    """time.sleep with this thread named `name` meanwhile, where the system lets a thread rename itself."""
    comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
    try:
        old = comm.read_text().rstrip("\n")
        comm.write_text(name)
    except OSError:
        old = None
    try:
        time.sleep(seconds)
    finally:
        if old is not None:
            try:
                comm.write_text(old)
            except OSError:
                pass


class RayColorizer:
    """What the server's model thread calls instead of a Colorizer: the same colorize/colorize_batch, info,
    config and limits, with the work done by the Ray Serve deployment."""

    def __init__(self, config: RayServeConfig, checkpoint: str | Path | None, device: str = "auto",
                 bf16: bool = False, limits: P.Limits = P.DEFAULT_LIMITS, delay_ms: float = 0.0) -> None:
        from ray import serve

        self.settings, self.limits = config, limits
        resources = connect(config.address)
        gpus = config.gpus if config.gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        if gpus == 0 and device == "auto":
            device = "cpu"
        low = max(1, config.replicas)
        high = max(low, config.max_replicas or low)
        deployment = serve.deployment(ColourReplica, name="Colorizer", max_ongoing_requests=2,
                                      ray_actor_options={"num_cpus": config.cpus, "num_gpus": gpus,
                                                         "runtime_env": MODEL_ACTOR_ENV},
                                      autoscaling_config={"min_replicas": low, "initial_replicas": low,
                                                          "max_replicas": high, "target_ongoing_requests": 1,
                                                          "upscale_delay_s": 5, "downscale_delay_s": 120})
        # no HTTP proxy: the ZeroMQ front end is the only way in
        serve.start(http_options={"location": "NoServer"})
        app = deployment.bind(str(checkpoint) if checkpoint else None, device, bf16, limits, config.threads,
                              delay_ms)
        self.handle = serve.run(app, name=APP, route_prefix=None)
        described = self.handle.describe.remote().result(timeout_s=config.request_timeout_s)
        self.config, self.untrained = described["config"], described["untrained"]
        self._info = {**described["info"], "ray": {"address": config.address or "local", "replicas": [low, high],
                                                   "gpus_per_replica": gpus}}
        log.info("Ray Serve deployment ready: %d to %d replica(s), %g GPU each", low, high, gpus)

    @property
    def info(self) -> dict:
        return self._info

    def colorize(self, lineart: np.ndarray, reference: np.ndarray, outputs: Sequence[str] = ("color",),
                 resolution: int | None = None, timings: dict | None = None,
                 hints: np.ndarray | None = None) -> dict[str, np.ndarray]:
        request = (lineart, reference, tuple(outputs), resolution) + (() if hints is None else (hints,))
        result = self.colorize_batch([request], timings)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def colorize_batch(self, requests: Sequence[tuple], timings: dict | None = None) -> list:
        """Every request (line art, reference, outputs, resolution[, hints]) sent at once; a result, or the
        exception for that request alone, in request order."""
        calls = [self._call(r) for r in requests]
        results: list = []
        for request, response in zip(requests, calls):
            for attempt in range(self.settings.retries + 1):
                try:
                    results.append(response.result(timeout_s=self.settings.request_timeout_s))
                    break
                except Exception as exc:
                    lost = _replica_lost(exc)
                    if lost and attempt < self.settings.retries:
                        log.warning("a replica died during a request (%s): sending it again", type(exc).__name__)
                        response = self._call(request)
                        continue
                    results.append(_as_protocol_error(exc, lost, self.settings.request_timeout_s))
                    break
        return results

    def _call(self, request: tuple) -> Any:
        lineart, reference, outputs, resolution, *hints = request
        return self.handle.colorize.remote(lineart, reference, tuple(outputs), resolution, *hints)

    def close(self) -> None:
        """Delete the deployment (the cluster keeps running: other jobs may use it)."""
        from ray import serve

        try:
            serve.delete(APP)
        except Exception as exc:  # the cluster may be gone already
            log.debug("could not delete the Ray Serve application: %s", exc)


def _replica_lost(exc: BaseException) -> bool:
    from ray import exceptions as rx

    return isinstance(exc, (rx.RayActorError, rx.ActorUnavailableError, rx.ObjectLostError))


def _as_protocol_error(exc: BaseException, lost: bool, timeout_s: float) -> Exception:
    """An exception raised in a replica arrives wrapped (RayTaskError): unwrap it, so a bad request is still
    `bad_request` and the model thread words it exactly as the plain server does."""
    if lost:
        return P.IrodoriError("worker_lost", f"the Ray replica running this request died twice ({exc}); send it "
                                             "again")
    from ray import exceptions as rx

    if isinstance(exc, rx.RayTaskError):
        cause = exc.as_instanceof_cause()
        inner = getattr(exc, "cause", None)
        return inner if isinstance(inner, Exception) else cause
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "GetTimeoutError":
        return P.IrodoriError("internal", f"no Ray replica answered within {timeout_s:g} s; is the cluster "
                                          "overloaded or short of GPUs?")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
