"""What every trainer callback does, whatever the trainer: watch the model with the steps marked by
the callback, keep a gradientflow run (written by the main process only, off the training thread),
turn each closed window into the scalars a trainer's loggers take, and end the run with a status."""

from __future__ import annotations

import contextlib
import os

from ..probes import watch
from ..store import Run

LOGGED = ("act_std", "saturated", "dead", "weight_grad_norm", "update_ratio")


class Watching:
    """``out``: the run folder (new or empty; None keeps the statistics in memory only, in
    ``self.probe``); ``every``: measure every k-th optimiser step; ``layers``: names or globs of the
    modules to watch (default: every layer the probes know); ``stats``: as ``watch``'s."""

    def __init__(self, out: str | os.PathLike | None = None, *, every: int = 10, layers=None, stats=None,
                 log_scalars: bool = True):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an integer >= 1")
        self.out, self.every, self.layers, self.stats, self.log_scalars = out, every, layers, stats, log_scalars
        self.probe = None
        self.run: Run | None = None
        self.findings: list = []
        self._writing = contextlib.ExitStack()

    def start(self, model, main_process: bool, **config) -> None:
        """Watch ``model`` (the callback marks the steps) and, on the main process, create the run."""
        self.probe = watch(model, every=self.every, layers=self.layers, stats=self.stats, steps="manual")
        if self.out is not None and main_process:
            self.run = Run.create(self.out, {**config, "model": type(model).__name__, "probe_every": self.every,
                                             "layers": self.layers})
            self._writing.enter_context(self.run.background())  # the run's files written off the training thread
            self.run.set_status("running", steps=0)

    def close_window(self, step: int) -> dict[str, float]:
        """Close the probes' window (stored in the run) and return its main scalars by
        ``gradientflow/<layer>/<statistic>`` (empty with ``log_scalars=False``)."""
        rows = self.probe.flush(self.run, step)
        if not self.log_scalars:
            return {}
        return {f"gradientflow/{r['layer']}/{k}": float(r[k]) for r in rows for k in LOGGED
                if isinstance(r.get(k), (int, float)) and r[k] == r[k]}

    def lines(self) -> list[str]:
        """The findings over every window so far, a line each (kept in ``self.findings``)."""
        self.findings = self.probe.findings()
        return [f"gradientflow [{f.kind}] {', '.join(f.layers)}: {f.message} -> {f.recommendation}"
                for f in self.findings]

    def finish(self, step: int, status: str, message: str = "") -> None:
        """Remove the probes' hooks and end the run with ``status``, once every write has landed."""
        if self.probe is not None:
            self.probe.detach()
        if self.run is not None:
            self.run.set_status(status, steps=step, message=message)
            self._writing.close()
