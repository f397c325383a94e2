"""A training job from a config: data, model, loop and run store put together.

This is the glue the CLI and the experiments share; ``train.fit`` stays free of model
building and ``model`` free of training.
"""

from __future__ import annotations

import math
import os

import torch

from . import data, memory, model
from .config import TrainConfig
from .store import Run, write_json
from .store.parts import load_converters
from .train import Observer, Summary, fit


def dataset(cfg: TrainConfig) -> data.Dataset:
    """The config's dataset, normalised as it says."""
    return data.normalize(data.load(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, noise=cfg.noise,
                                    seed=cfg.data_seed), cfg.normalize)


def network(cfg: TrainConfig, d: data.Dataset) -> torch.nn.Module:
    """A freshly initialised ``mlp`` for ``d`` as the config says (weights from ``cfg.seed``)."""
    g = torch.Generator().manual_seed(cfg.seed)
    return model.mlp(d.features, cfg.width, cfg.depth, d.outputs, activation=cfg.activation, init_name=cfg.init,
                     scale=cfg.scale(), generator=g, lsuv_batch=d.x_train[:512] if cfg.init == "lsuv" else None)


def prepare(cfg: TrainConfig, max_memory: int | None = None) -> tuple[torch.nn.Module, data.Dataset]:
    """The normalised dataset and a freshly initialised ``mlp`` for it (weights from ``cfg.seed``).
    Its memory is estimated from the sizes (``memory.training``) and a run that would not fit in
    ``max_memory`` bytes (default: the machine's) is refused in one line: before the data is made when
    the source's sizes are known, else once the file is read, and always before the net is drawn."""
    planned = data.planned(cfg.data, cfg.n_train, cfg.n_test)
    if planned is not None:
        _refuse_oversized(cfg, *planned, max_memory)
    d = dataset(cfg)
    _refuse_oversized(cfg, len(d.y_train) + len(d.y_test), d.features, d.outputs, max_memory)
    return network(cfg, d), d


def _refuse_oversized(cfg: TrainConfig, samples: int, features: int, outputs: int, max_memory: int | None) -> None:
    needed = memory.training(features, cfg.width, cfg.depth, outputs, batch=cfg.batch_size, samples=samples)
    memory.refuse(f"training a {cfg.depth} x {cfg.width} net on {samples:,} samples of {features} features "
                  f"with batches of {cfg.batch_size:,}", needed, max_memory)


def train(cfg: TrainConfig, net: torch.nn.Module, d: data.Dataset, *, run: Run | None = None, resume: bool = False,
          progress: bool = False, observers: tuple[Observer, ...] = ()) -> Summary:
    """``fit`` with the config's optimiser and loop, and a probe attached for the run's length when
    ``cfg.probe`` asks for one (windows: one per epoch unless ``cfg.probe_window`` says otherwise)."""
    probe = None
    if cfg.probe:
        from .probes import watch

        window = cfg.probe_window or math.ceil(len(d.y_train) / cfg.batch_size)
        probe = watch(net, every=cfg.probe_every, window=window)
        observers = (*observers, probe)
    parts = cfg.parts
    try:
        return fit(net, d, parts.optimizer, parts.loop, run=run, resume=resume, progress=progress,
                   observers=observers)
    finally:
        if probe is not None:
            probe.detach()


def run(cfg: TrainConfig, out: str | os.PathLike | None = None, *, progress: bool = False,
        observers: tuple[Observer, ...] = (), max_memory: int | None = None) -> Summary:
    """Train a new run as ``cfg`` says, stored in ``out`` when given (a new or empty folder)."""
    net, d = prepare(cfg, max_memory)  # bad data, and sizes that would not fit, are refused before the run folder exists
    store = Run.create(out, cfg.model_dump()) if out is not None else None
    return train(cfg, net, d, run=store, progress=progress, observers=observers)


def resume(out: str | os.PathLike, *, epochs: int | None = None, progress: bool = False,
           observers: tuple[Observer, ...] = (), same_as: dict | None = None, max_memory: int | None = None) -> Summary:
    """Continue a stored run from its latest checkpoint (optionally for more epochs in all).

    ``same_as``: config fields the caller asks for (a repeated command line, a config file); each
    must equal the stored value once validated, else a ValueError names both ("stored X, given Y").
    Only ``epochs`` may change."""
    store = Run(out)
    load_converters()  # before training, as Run.create does
    stored = stored_config(store)
    if same_as:
        kept = TrainConfig(**stored).model_dump()  # defaults filled in for fields newer than the run
        asked = TrainConfig(**{**stored, **same_as}).model_dump()  # validated and normalised the same way
        for key in same_as:
            if key != "epochs" and asked[key] != kept[key]:
                raise ValueError(f"--resume continues the stored run, whose {key} is fixed: stored "
                                 f"{key}={kept[key]!r}, given {key}={same_as[key]!r} (only --epochs may change)")
        if epochs is None and "epochs" in same_as:
            epochs = asked["epochs"]
    cfg = TrainConfig(**{**stored, "epochs": stored["epochs"] if epochs is None else epochs})
    net, d = prepare(cfg, max_memory)
    with store.writing():  # refused here, before config.json changes, while another process trains into it
        if cfg.epochs != stored["epochs"]:
            write_json(store.path / "config.json", cfg.model_dump())
        return train(cfg, net, d, run=store, resume=True, progress=progress, observers=observers)


def stored_config(run: Run) -> dict:
    """The run's config.json checked with the same typed model as a new config (``TrainConfig``),
    its defaults filled in; StoreError naming the file and the first problem for one that does not
    validate (a field missing, of another type, out of range)."""
    from pydantic import ValidationError

    from .config import describe_error
    from .store import StoreError

    try:
        return TrainConfig(**run.config()).model_dump()
    except (ValidationError, TypeError) as err:
        why = describe_error(err) if isinstance(err, ValidationError) else str(err)
        raise StoreError(f"{str(run.path / 'config.json')!r} is damaged: {why}") from None


def default_folder(cfg: TrainConfig, root: str | os.PathLike = "runs") -> str:
    """``root/<time>-<data>-<activation>-<optimizer>``, a new run's folder when none is named (``root`` is created)."""
    import time
    from pathlib import Path

    Path(root).mkdir(exist_ok=True)
    return str(Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data.split(':')[0]}-{cfg.activation}-{cfg.optimizer}")
