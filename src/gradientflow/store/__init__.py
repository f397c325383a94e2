"""The run store: one directory per run, written so that a kill at any moment leaves it readable.

::

    RUN/
      config.json                  what defines the run (written once, at creation)
      status.json                  running | finished | diverged | interrupted, with the summary
      metrics/part-<step>.parquet  long format: step, epoch, split, name, value
      tables/<name>-<step>.parquet other long tables (probe histograms, ...)
      checkpoints/step-<step>.pt   model, optimiser, scheduler and loop state
      .lock                        held (``flock``) by the one process training into the run

Every file is written to a temporary name in the same folder, flushed to disk and renamed into
place (``os.replace`` is atomic), so readers see a whole file or none. Inside ``Run.background()``
the writes run in order on one background thread (a bounded queue), off the training step's path.
Metric parts are named by the step of the checkpoint they precede; resuming from checkpoint ``s``
drops parts after ``s``, so a resumed run holds each step's rows exactly once. Queries across runs
(``sql``) go through DuckDB.

No symbolic link inside a run is followed: a run whose files or folders are links (``.lock``,
``checkpoints``, a part, ...) is refused for writing and listed as damaged, its linked parts are
never read, and nothing is deleted outside the run's own folders. A run received from elsewhere or
kept on a shared volume cannot make a training process write, truncate or delete someone else's file.

One concept per module: ``atomic`` (the atomic writes), ``writer`` (the background thread),
``lock`` (the run's ``flock``), ``parts`` (reading and checking Parquet parts), ``run`` (``Run``
and ``list_runs``), ``queries`` (the read side of a run), ``errors`` (``StoreError``).
"""

from .atomic import write_atomic, write_json
from .errors import StoreError
from .lock import RunBusy
from .parts import METRIC_SCHEMA, read_part
from .run import Run, list_runs

__all__ = ["METRIC_SCHEMA", "Run", "RunBusy", "StoreError", "list_runs", "read_part", "write_atomic", "write_json"]
