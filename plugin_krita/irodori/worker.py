"""The docker's network thread: Krita's UI thread never waits on the backend.

The UI thread reads pixels (Krita's API belongs to it) and feeds jobs into a queue; this QThread sends
them with protocol.colorize_many (one Client per helper thread, up to max_in_flight at once) and emits
each answer back as a signal, which Qt delivers on the UI thread. Feeding a job per answer keeps at most a
few images in memory however long the batch is.
"""
from __future__ import annotations

import queue

from . import protocol
from .qt import QtCore, Signal


class ColorizeWorker(QtCore.QThread):
    answered = Signal(int, object)  # job number (feeding order), {output: Pixels} or the exception
    crashed = Signal(str)
    all_done = Signal()  # after the last answer (QThread.finished may overtake queued answers)

    def __init__(self, endpoint: str, timeout: float, max_in_flight: int = 2, parent=None,
                 retry_busy: bool = True) -> None:
        super().__init__(parent)
        self.endpoint, self.timeout, self.max_in_flight = endpoint, timeout, max_in_flight
        self.retry_busy = retry_busy  # a batch waits for a busy server; one picture reports `busy` at once
        self.jobs: queue.Queue = queue.Queue()
        self.clients: list = []
        self.cancelled = False

    def feed(self, job: dict) -> None:
        self.jobs.put(job)

    def end(self) -> None:
        """No more jobs: the thread finishes once the ones sent are answered."""
        self.jobs.put(None)

    def cancel(self) -> None:
        """From the UI thread: requests in flight raise IrodoriError('cancelled') at once."""
        self.cancelled = True
        self.jobs.put(None)
        for client in list(self.clients):
            client.cancel()

    def _jobs(self):
        while not self.cancelled:
            job = self.jobs.get()
            if job is None:
                return
            yield job

    def _client(self) -> protocol.Client:
        client = protocol.Client(self.endpoint, timeout=self.timeout)
        self.clients.append(client)  # a client made after cancel() runs on; the docker ignores its answer
        return client

    def run(self) -> None:
        try:
            results = protocol.colorize_many(self._client, self._jobs(), self.max_in_flight, self.retry_busy)
            try:
                for n, outcome in results:
                    self.answered.emit(n, outcome)
            finally:
                results.close()
        except Exception as exc:  # a bug must reach the docker, not vanish with the thread
            self.crashed.emit(f"{type(exc).__name__}: {exc}")
        self.all_done.emit()


class CallWorker(QtCore.QThread):
    """Runs one blocking function (a ping) off the UI thread; emits (result, None) or (None, exception)."""
    done = Signal(object, object)

    def __init__(self, fn, parent=None) -> None:
        super().__init__(parent)
        self.fn = fn

    def run(self) -> None:
        try:
            self.done.emit(self.fn(), None)
        except Exception as exc:
            self.done.emit(None, exc)
