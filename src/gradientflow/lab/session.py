"""One lab session: a network training on a thread of its own, and the frames the page draws.

A ``LabConfig`` is what the page's controls hold (validated here, on the server: bounds fit for a
live page, names from the catalogs, finite positive rates). ``Session`` builds the data, net and
optimiser from it with the engine's own parts (``job.dataset``, ``job.network``, ``optim.build``,
``optim.schedule``, ``optim.clip_``, ``train.epoch_order``) and watches the net with the probes
(``probes.watch``). The page plays, pauses and steps, so the session runs its own loop over
those parts (``train.fit`` runs a whole run at once): forward, the loss (cross-entropy, or the
squared error on a regression set), backward, clipping, the optimiser and the schedule, as ``fit``
does. ``frame()`` hands the page what changed since the last frame (at most 5 times a second, the
probes' window). Memory is bounded: the curves kept for ``keep`` hold at most ``CURVE_POINTS``
points (the older half thinned), and each frame carries only what is new since the last one (the
page keeps its own bounded copy).
"""

from __future__ import annotations

import threading
import time

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import activations, catalog, init, job, model, optim, properties, theory
from .. import data as datasets
from ..config import TrainConfig
from ..guard import Diverged, Rollback
from ..layers import activation_of
from ..penalty import Penalty
from ..probes import watch
from ..records import LoopSpec, MetricRows
from ..store import Run
from ..trainer import Trainer
from . import features
from .views import GRID, KEEP_WINDOWS, Fresh, append_point, boundary, diagram, finite, for_page, layer_labels

# the catalog's names (``catalog``), less what a live page cannot offer: files and Maxout (a layer
# of its own width); the initialisers it offers, plus its own "critical" and "gain"
DATASETS = catalog.names("data")
INITS = ("xavier", "he", "lecun", "orthogonal", "normal", "uniform", "zeros", "critical", "gain", "meanfield")
OPTIMIZERS = catalog.names("optimizer")
ACTIVATIONS = tuple(a for a in catalog.names("activation") if a != "maxout")
WINDOW_SECONDS = 0.2  # the probes' window closes at most 5 times a second (each close reads every layer)
WINDOW_SHARE = 0.05  # ... and takes at most this share of the time (a 50-layer net's close costs 13 ms)
BOUNDARY_SHARE = 0.05  # the decision boundary takes at most this share of the training thread's time
MAX_PENDING_STEPS = 100  # "one step" presses queued at most; pause and reset drop them
READ_EVERY = 4096  # the training thread reads its own rows at least this often: memory stays bounded without frames
SCHEDULE_EPOCHS = 50  # a session has no end: a decaying schedule spans this many epochs
MARK_SECONDS = 5.0  # a new rollback point for the NaN guard at most this often (a copy of the state)
# each epoch's point on the page's second chart: accuracies, or a regression set's test R² (it has no accuracy)
TEST_POINTS = {"classification": ("step", "train_accuracy", "test_loss", "test_accuracy"),
               "regression": ("step", "test_loss", "test_r2")}


class LabConfig(BaseModel):
    """The page's controls. ``activations``: one per hidden layer (comma-separated), or empty for
    ``activation`` everywhere. ``init`` adds to the catalog ``critical`` (mean-field's edge of chaos
    at ``sigma_b2``: W ~ N(0, sigma_w2*/fan_in)) and ``gain`` (Xavier with the activation's
    variance-preserving gain, measured by ``properties.gain``); ``meanfield`` draws W ~ N(0,
    sigma_w2/fan_in) and b ~ N(0, sigma_b2) (the phase diagram's point, draggable in the page). The
    Greek names are the seeds': alpha the rate, mu the momentum (Adam's beta1), rho the second-moment
    decay, delta the epsilon. ``l1``, ``l2`` penalise the weights (``penalty.Penalty``); ``dropout``
    and ``batch_norm`` go into each hidden layer (``model.mlp``); ``features`` are the inputs of a
    2-D set (``lab.features``: crosses such as x1^2, x1x2, sin(x1)); ``train_share`` is the share of
    the set's samples used for training, the rest for the test split."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    data: str = "spiral"
    depth: int = Field(4, ge=1, le=50)
    width: int = Field(32, ge=1, le=512)
    activation: str = "tanh"
    activations: str = ""
    init: str = "xavier"
    std: float = Field(0.01, gt=0, le=100)  # normal / uniform
    sigma_b2: float = Field(0.05, ge=0, le=10)  # critical, meanfield
    sigma_w2: float = Field(1.0, gt=0, le=100)  # meanfield
    optimizer: str = "sgd"
    alpha: float = Field(0.1, gt=0, le=100)
    mu: float = Field(0.9, ge=0, lt=1)
    rho: float = Field(0.99, ge=0, lt=1)
    delta: float = Field(1e-8, gt=0, le=1)
    schedule: str = "constant"
    clip: float = Field(0.0, ge=0, le=1e6)  # gradient norm clipping; 0: none
    batch_size: int = Field(64, ge=1, le=4096)
    normalize: str = "standardize"
    noise: float = Field(0.1, ge=0, le=2)
    train_share: float = Field(0.8, ge=0.05, le=0.95)
    features: str = features.PLAIN  # 2-D sets only
    l1: float = Field(0.0, ge=0, le=10)
    l2: float = Field(0.0, ge=0, le=10)
    dropout: float = Field(0.0, ge=0, le=0.9)
    batch_norm: bool = False
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("data", "activation", "init", "optimizer", "schedule", "normalize")
    @classmethod
    def _known(cls, v: str, info) -> str:
        own = {"activation": ACTIVATIONS, "init": INITS}.get(info.field_name)
        return catalog.check(info.field_name, v, own)

    @field_validator("features")
    @classmethod
    def _features(cls, v: str) -> str:
        return ",".join(features.parse(v))

    @model_validator(mode="after")
    def _per_layer(self) -> "LabConfig":
        names = self.layer_activations()
        if len(names) != self.depth:
            raise ValueError(f"activations lists {len(names)} names for depth {self.depth}: one per hidden layer")
        unknown = [a for a in names if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r} in activations; expected one of: {', '.join(ACTIVATIONS)}")
        return self

    def layer_activations(self) -> list[str]:
        if not self.activations.strip():
            return [self.activation] * self.depth
        return [a.strip() for a in self.activations.split(",")]

    def split_sizes(self) -> tuple[int, int]:
        """(n_train, n_test): the set's usual number of samples, split at ``train_share``."""
        total = datasets.planned(self.data)[0]
        n_train = min(max(1, round(self.train_share * total)), total - 1)
        return n_train, total - n_train

    def train_config(self) -> TrainConfig:
        """The engine's config for this set-up (one activation: per-layer ones, the crosses, batch norm
        and dropout are applied by ``_network``, the L1 and L2 penalties by the trainer's observer)."""
        n_train, n_test = self.split_sizes()
        fields = {"n_train": n_train, "n_test": n_test, "data": self.data, "depth": self.depth, "width": self.width,
                  "activation": self.activation, "optimizer": self.optimizer, "lr": self.alpha, "schedule": self.schedule,
                  "batch_size": self.batch_size, "normalize": self.normalize, "noise": self.noise, "seed": self.seed,
                  "epochs": 1_000_000, "clip_norm": self.clip or None}
        if self.optimizer in optim.USES_MU:
            fields["momentum"] = self.mu
        if self.optimizer in optim.USES_RHO:
            fields["rho"] = self.rho
        if self.optimizer in optim.DEFAULT_DELTA:
            fields["eps"] = self.delta
        if self.init == "critical":
            fields.update(init="meanfield", sigma_w2=init.critical(self.activation, self.sigma_b2).sigma_w2,
                          sigma_b2=self.sigma_b2)
        elif self.init == "meanfield":
            fields.update(init="meanfield", sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2)
        elif self.init == "gain":
            fields.update(init="xavier", gain=properties.gain(activations.get(self.activation)))
        elif self.init in ("normal", "uniform"):
            fields.update(init=self.init, std=self.std)
        else:
            fields["init"] = self.init
        return TrainConfig(**fields)


def _network(cfg: LabConfig, train_cfg: TrainConfig, d) -> torch.nn.Module:
    """The engine's ``mlp`` (as ``job.network`` draws it, with batch norm and dropout), each hidden
    layer's activation module swapped for its own, behind the feature crosses of a 2-D set."""
    crosses = features.parse(cfg.features) if d.features == 2 else []
    inputs = len(crosses) if crosses else d.features
    g = torch.Generator().manual_seed(train_cfg.seed)
    net = model.mlp(inputs, cfg.width, cfg.depth, d.outputs, activation=cfg.activation, init_name=train_cfg.init,
                    scale=train_cfg.scale(), generator=g, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
    names = cfg.layer_activations()
    if len(set(names)) > 1:
        hidden = [i for i, m in enumerate(net) if activation_of(m) is not None]
        for i, name in zip(hidden, names):
            net[i] = activations.get(name).module(cfg.width)
    if crosses and ",".join(crosses) != features.PLAIN:
        net = torch.nn.Sequential(features.Crosses(crosses), *net)
    return net


class Session:
    """A set-up being trained: ``play``, ``pause``, ``step``, ``reset`` from the page's thread, the
    training on the session's own thread, ``frame()`` from the server's. ``threads``: the torch
    threads the training uses (the server shares the machine's among its sessions); it may change
    while the session plays."""

    def __init__(self, cfg: LabConfig, threads: int = 1):
        self.threads = threads
        self.lock = threading.Lock()
        self.frame_wanted = threading.Event()  # the training loop steps aside for a waiting frame
        self.playing = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None
        self._setup(cfg)
        import pandas  # noqa: F401  (the findings' first read would import it inside a frame)
        self.thread = threading.Thread(target=self._loop, name="gradientflow-lab", daemon=True)
        self.thread.start()

    # --- set-up ---

    def _setup(self, cfg: LabConfig) -> None:
        self.cfg, self.train_cfg = cfg, cfg.train_config()
        self.data = job.dataset(self.train_cfg)
        self.net = _network(cfg, self.train_cfg, self.data)  # drawn from the config's seeded generator
        loop = LoopSpec(epochs=SCHEDULE_EPOCHS, batch_size=cfg.batch_size, seed=cfg.seed)
        penalty = (Penalty(self.net, cfg.l1, cfg.l2),) if cfg.l1 or cfg.l2 else ()
        self.trainer = Trainer(self.net, self.data, self.train_cfg.parts.optimizer, loop, keep_rows=True,
                               observers=penalty)
        self.trainer.model.train()
        self.trainer.good = self.trainer.snapshot()
        self._mark_at = time.monotonic() + MARK_SECONDS
        if hasattr(self, "probe"):
            self.probe.detach()
        self.probe = watch(self.net, every=1, keep_windows=KEEP_WINDOWS)
        self.labels = layer_labels(self.net)
        self.pending_steps = 0
        self.boundary: dict | None = None  # the latest decision boundary, made by the training thread
        self.boundary_new = False  # not yet sent to the page
        self._boundary_at, self._boundary_step, self._boundary_cost = 0.0, -1, 0.0
        params = sum(p.numel() for p in self.net.parameters())  # a costlier net gets a coarser boundary grid
        self._grid = int(max(16, min(GRID, (2e8 / max(params, 1)) ** 0.5)))
        self.shown = 0  # the last step whose rows the page has (a replay after a rollback logs steps again)
        self.stride = max(1, self.trainer.per_epoch // 8)  # a loss point every this many steps
        self.curves: dict[str, list] = {"step": [], "loss": []}  # kept (thinned) for keep()
        self.tests: dict[str, list] = {k: [] for k in TEST_POINTS[self.data.task]}
        self.fresh = Fresh()  # what the page has not been sent yet
        self._findings_at = self._window_at = self._window_cost = 0.0
        self._since: dict = {}  # each finding's first step, kept while it holds
        self.static = self._static()
        self.diverged, self.diverged_at, self._diverged_shown = "", None, False

    @property
    def step_count(self) -> int:
        return self.trainer.step

    @property
    def epoch(self) -> int:
        return self.trainer.epoch

    def _static(self) -> dict:
        """What changes only with the set-up: the theory's per-layer std and the phase-diagram point."""
        out: dict = {"config": self.cfg.model_dump(), "layers": self.cfg.depth, "data": self.data.describe(),
                     "two_d": self.data.features == 2, "task": self.data.task}
        act, cfg = self.cfg.activation, self.train_cfg
        scales = (cfg.sigma_w2, cfg.sigma_b2 or 0.0) if cfg.init == "meanfield" else \
            init.meanfield_scales(cfg.init, cfg.width, scale=cfg.scale())
        out["point"], out["theory_note"] = None, self._beyond_theory(scales is not None)
        if not out["theory_note"]:
            w2, b2 = scales
            pred = theory.predict_layers(act, self.cfg.depth, w2, b2, input_var=1.0)
            out["theory_std"] = [p.std for p in pred]
            point = theory.analyse(act, w2, b2)
            out["point"] = {"sigma_w2": w2, "sigma_b2": b2, "phase": point.phase, "xi_c": finite(point.xi_c),
                            "max_trainable_depth": finite(point.max_trainable_depth)}
            try:
                q = [10 ** (k / 20) for k in range(-60, 41)]
                line_w, line_b = theory.critical_line(act, q)
                keep = [(float(w), float(b)) for w, b in zip(line_w, line_b) if w <= 4 and b <= 0.5]
                out["critical_line"] = keep
            except ValueError:
                out["critical_line"] = []
        return out

    def _beyond_theory(self, known_scales: bool) -> str:
        """Why mean-field theory (a plain net of one elementwise activation, weights of a known
        variance) does not describe this set-up, or "" when it does."""
        cfg = self.cfg
        why = [what for what, holds in (
            ("per-layer activations", cfg.activations.strip()), ("batch norm", cfg.batch_norm),
            ("dropout", cfg.dropout), ("feature crosses", self.data.features == 2 and cfg.features != features.PLAIN),
            (f"the {cfg.init} init", not known_scales),
            (f"the {cfg.activation} activation", cfg.activation not in activations.CATALOG)) if holds]
        return ", ".join(why)

    # --- controls (any thread) ---

    def play(self) -> None:
        self.playing.set()

    def pause(self) -> None:
        self.playing.clear()
        self.pending_steps = 0  # steps queued before the pause do not run after it

    def one_step(self) -> None:
        self.playing.clear()
        with self.lock:
            self.pending_steps = min(self.pending_steps + 1, MAX_PENDING_STEPS)

    def news(self) -> bool:
        """Something for the page although no step was taken: a decision boundary drawn while paused, or a
        divergence not yet shown (a rollback can bring the step count back to the last frame's)."""
        return self.boundary_new or (bool(self.diverged) and not self._diverged_shown)

    def reset(self, cfg: LabConfig | None = None) -> None:
        """Start again from a fresh net (``cfg``: a new set-up, already validated)."""
        self.playing.clear()
        with self.lock:
            self._setup(cfg or self.cfg)

    def request_stop(self) -> None:
        """Ask the training thread to end (returns at once; it ends after its current step)."""
        self.stop.set()
        self.playing.set()  # wake the loop so that it sees the stop

    def close(self) -> None:
        self.request_stop()
        self.thread.join(timeout=5)
        self.probe.detach()

    # --- training (the session's thread) ---

    def _loop(self) -> None:
        threads = None
        while not self.stop.is_set():
            if not self.playing.wait(timeout=0.05) and not self.pending_steps:
                if self.data.features == 2 and self._boundary_step != self.step_count:
                    with self.lock:  # paused after a step: the page still gets that step's boundary
                        self._make_boundary()
                continue
            if self.stop.is_set():
                return
            if self.frame_wanted.is_set():  # a lock is not fair: without this the loop would take it back at once
                time.sleep(0.001)
                continue
            with self.lock:
                if self.pending_steps:
                    self.pending_steps -= 1
                elif not self.playing.is_set():
                    continue
                if self.diverged:
                    self.playing.clear()
                    continue
                if threads != self.threads:  # the server shares its threads anew as sessions come and go
                    threads = self.threads
                    torch.set_num_threads(threads)
                try:
                    self._train_step()
                except Exception as err:  # noqa: BLE001 - shown in the page, the server goes on
                    self.error = f"{type(err).__name__}: {err}"
                    self.playing.clear()

    def _train_step(self) -> None:
        """One step through the engine's trainer; a new rollback point now and then; the decision
        boundary when it is due (``BOUNDARY_SHARE``)."""
        outcome = self.trainer.advance()
        if outcome is None and time.monotonic() > self._mark_at:
            outcome, self._mark_at = self.trainer.mark(), time.monotonic() + MARK_SECONDS
        self._settle(outcome)
        if len(self.trainer.rows) >= READ_EVERY and not self.diverged:  # no frame taken for a while
            self._read()
        if self.data.features == 2 and time.monotonic() - self._boundary_at > self._boundary_cost / BOUNDARY_SHARE:
            self._make_boundary()

    def _settle(self, outcome: Rollback | Diverged | None) -> None:
        """A rollback goes back to the last good state (the steps after it are replayed, checked one by
        one); a divergence stops the session and says where, its curves kept up to that step."""
        if isinstance(outcome, Rollback):
            outcome = self.trainer.rollback(outcome)
        if isinstance(outcome, Diverged):
            label = self.labels.get(outcome.module)
            where = "" if label is None else f" (the page's {'output layer' if label == 'output' else f'layer {label}'})"
            self.diverged = outcome.message + where
            self.diverged_at = outcome.step
            self.playing.clear()
            self.pending_steps = 0
            self.trainer.check()  # the replayed steps before it, each checked already: their rows
            self._take_rows()

    def _read(self) -> None:
        """The guard's read of the steps since the last one, and their rows as curve points: a loss point
        every ``stride`` steps, each epoch's train and test means."""
        self._settle(self.trainer.check())
        if not self.diverged:
            self._take_rows()

    def _take_rows(self) -> None:
        rows = self.trainer.rows.take()
        epoch_points: dict[int, dict] = {}
        for step, split, name, value in zip(rows["step"], rows["split"], rows["name"], rows["value"]):
            if step <= self.shown:
                continue
            if split == "train" and name == "loss" and (step % self.stride == 0 or step < 10 or self.diverged):
                point = {"step": step, "loss": value}
                append_point(self.curves, point)
                self.fresh.curves.append(point)
            elif split in ("train_epoch", "test"):
                key = f"{'train' if split == 'train_epoch' else 'test'}_{name}"
                epoch_points.setdefault(step, {"step": step})[key] = finite(value)
        for point in epoch_points.values():
            point.pop("train_loss", None)
            append_point(self.tests, point)
            self.fresh.tests.append(point)
        self.fresh.bound()
        if rows["step"]:
            self.shown = max(self.shown, max(rows["step"]))

    # --- frames (the server's thread) ---

    def frame(self) -> dict:
        """What the page has not seen yet: the new points of the curves, the probes' window since the
        last frame (one row per layer, and a heat-map column of its histogram), the test split now
        and then, the decision boundary (2-D data) and, every second, the findings. A frame closes
        the probes' window when ``WINDOW_SECONDS`` have passed since the last one did, and its own cost
        over ``WINDOW_SHARE`` (20 times it), so that a deep net's frames do not stall its training."""
        self.frame_wanted.set()
        with self.lock:
            self.frame_wanted.clear()
            now = time.monotonic()
            rows = []
            if self.probe.step and now - self._window_at >= max(WINDOW_SECONDS, self._window_cost / WINDOW_SHARE):
                rows, self._window_at = self.probe.flush(), now
                self._window_cost = time.monotonic() - now
            if rows:
                self._layers(rows)
            if not self.diverged:
                self._read()
            fresh, self.fresh = self.fresh, Fresh()
            frame = {"type": "frame", "step": self.step_count, "epoch": self.epoch, "playing": self.playing.is_set(),
                     "curves": fresh.curves, "tests": fresh.tests, "layers": fresh.layers, "error": self.error,
                     "diverged": self.diverged, "diverged_at": self.diverged_at if self.diverged else None}
            self._diverged_shown = bool(self.diverged)
            self.error = None
            if self.boundary_new:
                frame["boundary"], self.boundary_new = self.boundary, False
            if now - self._findings_at > 1.0:  # with the findings, once a second
                frame["diagram"] = diagram(self.net, self.labels)
            if now - self._findings_at > 1.0 and self.probe.step:
                from ..probes.findings import analyse

                recent = self.probe.history().tail(50 * (self.cfg.depth + 1)).to_dict("records")
                frame["findings"] = for_page([f.to_dict() for f in analyse(recent)], self.labels, self._since,
                                             self.cfg.init)
                self._findings_at = now
        return frame

    def _layers(self, rows: list[dict]) -> None:
        """The window's rows as the page draws them: the scalars, and the histogram as a column of
        shares over the row's fixed range (None where the row has none). The page draws one row per
        linear layer: the probes' rows for batch norm's outputs are left out of its charts."""
        for r in rows:
            if str(r["layer"]) not in self.labels:
                continue
            hist = r.get("hist")
            total = sum(hist) if isinstance(hist, list) else 0
            self.fresh.layers.append({
                "layer": self.labels[str(r["layer"])], "step": self.step_count,
                **{k: finite(r.get(k)) for k in ("act_mean", "act_std", "saturated", "dead", "act_grad_norm",
                                                  "weight_grad_norm", "update_ratio")},
                "hist": [round(v / total, 4) for v in hist] if total else None,
                "lo": finite(r.get("hist_lo")), "hi": finite(r.get("hist_hi"))})

    @torch.no_grad()
    def _make_boundary(self) -> None:
        """The decision boundary now (on the training thread, between steps): the grid is coarser for
        nets whose forward pass costs more (about 2 x 10^8 multiply-adds at most), and it is made at
        most ``BOUNDARY_SHARE`` of the time (its own cost sets the interval)."""
        started = time.monotonic()
        self.boundary, self.boundary_new = boundary(self.net, self.data, self._grid), True
        self._boundary_step = self.step_count
        self._boundary_at = time.monotonic()
        self._boundary_cost = self._boundary_at - started

    # --- keep ---

    def keep(self, folder) -> str:
        """The session so far as a stored run (``gradientflow runs list`` sees it): its config, the loss
        curve and the test points as metrics, and the probes' windows as tables."""
        with self.lock:
            run = Run.create(folder, {**self.train_cfg.model_dump(), "lab": self.cfg.model_dump()})
            c, t = self.curves, self.tests
            rows = MetricRows()
            rows.extend(c["step"], [0] * len(c["step"]), ["loss"] * len(c["step"]), c["loss"])
            for key in TEST_POINTS[self.data.task][1:]:  # train_accuracy, test_loss, test_accuracy or test_r2
                split, _, name = key.partition("_")
                rows.extend(t["step"], [0] * len(t["step"]), [name] * len(t["step"]), t[key],
                            "train_epoch" if split == "train" else "test")
            run.append_metrics(self.step_count, rows.take())
            self.probe.flush(run, self.step_count)
            last_test = {k: t[k][-1] for k in t if k.startswith("test_")} if t["step"] else {}
            run.set_status("interrupted", steps=self.step_count, message="kept from the lab", **last_test,
                           train_loss=c["loss"][-1] if c["loss"] else None)
        return str(run.path)
