"""The run's background writer (``Run.background()``): its writes, in order, off the training step's path."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Writer:
    """One thread that performs queued writes in order. The queue is bounded, so a producer faster
    than the disk waits instead of piling snapshots up in memory. The first error stops the writing
    (later jobs are skipped: a part after a missing one would leave a gap) and is raised again in the
    producer's thread at its next ``submit`` or at ``close``."""

    def __init__(self, depth: int = 4):
        self.jobs: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="gradientflow-store", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job()
                except BaseException as err:  # noqa: BLE001 - handed to the producer's thread
                    self.error = err

    def _raise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self.jobs.put(job)

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for every queued write; then raise the first error, if any and if asked."""
        self.jobs.put(None)
        self.thread.join()
        if raise_error:
            self._raise()
