"""Typed, validated configurations, composed from small parts: checked once, at the edge (CLI, file, API).

A run's ``TrainConfig`` is the union of five parts, each a small typed record usable on its own:

=============  =========================================================  ===============
part           fields                                                     defined in
=============  =========================================================  ===============
DataSpec       data, n_train, n_test, noise, data_seed, normalize         config
ModelSpec      depth, width, activation, init, std, gain                  config
OptimizerSpec  optimizer, lr, momentum, rho, eps, weight_decay, clipping,  optim
               schedule, step_size, gamma, warmup_steps
LoopSpec       epochs, batch_size, seed, checkpoint_every,                train
               grad_norm_every, device
ProbeSpec      probe, probe_every, probe_window                           config
=============  =========================================================  ===============

The fields stay flat (``TrainConfig(depth=3, lr=0.1)``, the CLI's options, YAML/TOML files and a
run's ``config.json`` all use the same names); ``cfg.parts`` hands each part to the code that uses
it (``train.fit`` takes the optimiser and the loop) and ``TrainConfig.compose`` builds a config
from parts. A validation failure becomes one line that names the field, the value and what is
allowed (``describe_error``); everything downstream trusts the values.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from . import activations, catalog, init
from . import data as datasets  # 'data' is also a field name below
from .optim import OptimizerSpec
from .train import LoopSpec

MAX_ELEMENTS = 1 << 28  # batch x width x depth floats kept for histograms: 1 GiB of float32
MAX_WEIGHTS = 1 << 27  # hidden weights of a trained mlp: 2 GiB with gradients and Adam state


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _one_of(value: str, field: str) -> str:
    return catalog.check(field, value)


class DataSpec(_Part):
    """Which data set, how much of it, and how its inputs are normalised (``data.load``, ``data.normalize``)."""

    data: str = "mnist1d"
    n_train: int | None = Field(None, ge=1, le=datasets.MAX_SAMPLES)
    n_test: int | None = Field(None, ge=1, le=datasets.MAX_SAMPLES)
    noise: float = Field(0.1, ge=0, le=10)
    data_seed: int | None = Field(None, ge=0, le=2**32 - 1)
    normalize: str = "standardize"

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        return datasets.check_spec(v)

    @field_validator("normalize")
    @classmethod
    def _normalization(cls, v: str) -> str:
        return _one_of(v, "normalize")


class InitSpec(_Part):
    """An activation and the initialiser of the weights that feed it, with the initialiser's scale."""

    activation: str = "relu"
    init: str = "he"
    std: float | None = Field(None, ge=0)  # normal/uniform: weight std (C15 uses 0.01 and 1)
    gain: float | None = Field(None, ge=0)  # xavier/lecun/orthogonal: multiplies the std
    sigma_w2: float | None = Field(None, gt=0, le=1e4)  # meanfield: W ~ N(0, sigma_w2 / fan_in) (1)
    sigma_b2: float | None = Field(None, ge=0, le=1e4)  # meanfield: b ~ N(0, sigma_b2) (0)

    @field_validator("activation", "init")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        return _one_of(v, info.field_name)

    @model_validator(mode="after")
    def _meanfield_only(self) -> "InitSpec":
        given = [k for k in ("sigma_w2", "sigma_b2") if getattr(self, k) is not None]
        if given and self.init != "meanfield":
            raise ValueError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} read only by "
                             f"init='meanfield', not init={self.init!r}")
        return self

    def scale(self) -> init.Scale:
        """The initialiser's scale parameters (defaults where not given)."""
        if self.init == "meanfield":
            return init.meanfield(1.0 if self.sigma_w2 is None else self.sigma_w2,
                                  0.0 if self.sigma_b2 is None else self.sigma_b2)
        base = init.Scale()
        return init.Scale(gain=base.gain if self.gain is None else self.gain,
                          std=base.std if self.std is None else self.std)


class ModelSpec(InitSpec):
    """An ``mlp``: ``depth`` hidden layers (0 = logistic regression) of ``width`` units."""

    depth: int = Field(2, ge=0, le=1000)
    width: int = Field(100, ge=1, le=100_000)

    @model_validator(mode="after")
    def _size(self) -> "ModelSpec":
        n = max(self.depth - 1, 0) * self.width ** 2  # the hidden-to-hidden weights
        if n > MAX_WEIGHTS:
            raise ValueError(f"(depth - 1) x width^2 = {n:,} weights is too large; at most {MAX_WEIGHTS:,} "
                             f"(with gradients and optimiser state, 16 bytes each)")
        return self


class ProbeSpec(_Part):
    """Probes (``probes.watch``): sample every ``probe_every``-th step; a window per ``probe_window`` steps."""

    probe: bool = False
    probe_every: int = Field(1, ge=1)
    probe_window: int | None = Field(None, ge=1)  # None: one window per epoch


class Parts(NamedTuple):
    """A ``TrainConfig`` taken apart."""

    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    loop: LoopSpec
    probes: ProbeSpec


def _project(cfg: BaseModel, part: type[BaseModel]) -> BaseModel:
    return part.model_construct(**{k: getattr(cfg, k) for k in part.model_fields})


# the bases in reverse: pydantic lists the fields of the last base first (data, model, optimiser, loop, probes)
class TrainConfig(ProbeSpec, LoopSpec, OptimizerSpec, ModelSpec, DataSpec):
    """Everything that defines a training run (the engine's input; stored as the run's config.json).

    Composed of ``DataSpec``, ``ModelSpec``, ``OptimizerSpec``, ``LoopSpec`` and ``ProbeSpec``
    (see the module docstring); each part's validators run here too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @property
    def parts(self) -> Parts:
        """The config as its five typed parts."""
        return Parts(*(_project(self, part) for part in (DataSpec, ModelSpec, OptimizerSpec, LoopSpec, ProbeSpec)))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes``, validated again (``model_copy`` would not validate)."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def compose(cls, *parts: BaseModel, **fields) -> "TrainConfig":
        """A config from parts (later ones and ``fields`` win): ``compose(DataSpec(data="xor"), lr=0.1)``."""
        merged: dict = {}
        for part in parts:
            merged.update(part.model_dump(exclude_unset=True))
        return cls(**{**merged, **fields})


class PropagateConfig(InitSpec):
    """A forward pass of unit-Gaussian data through a fresh ``mlp`` (C15-C17)."""

    activation: str = "tanh"
    init: str = "xavier"
    gain: float | None = Field(None, gt=0)
    value: float | None = None  # constant: the value of every weight
    depth: int = Field(10, ge=1, le=1000)
    width: int = Field(500, ge=1, le=100_000)
    batch: int = Field(1000, ge=1, le=1_000_000)
    pieces: int = Field(2, ge=1, le=16)  # maxout
    bias: bool = True
    seed: int = Field(0, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _size(self) -> "PropagateConfig":
        n = self.batch * self.width * self.depth * (self.pieces if self.activation == "maxout" else 1)
        if n > MAX_ELEMENTS:
            raise ValueError(f"batch x width x depth = {n:,} values is too large; at most {MAX_ELEMENTS:,}")
        return self

    def scale(self) -> init.Scale:
        """The initialiser's scale parameters, the constant's value included."""
        return dataclasses.replace(super().scale(), value=0.0 if self.value is None else self.value)


class _TheoryPart(_Part):
    """An elementwise activation from the catalog: mean-field theory here covers no other."""

    activation: str = "tanh"

    @field_validator("activation")
    @classmethod
    def _elementwise(cls, v: str) -> str:
        if v not in activations.CATALOG:
            why = " (maxout is not elementwise: mean-field theory here covers elementwise activations)" \
                if v == "maxout" else ""
            raise ValueError(f"unknown activation; expected one of: {', '.join(activations.CATALOG)}{why}")
        return v


class TheoryPoint(_TheoryPart):
    """One point of the mean-field theory: an elementwise activation, sigma_w2 and sigma_b2."""

    sigma_w2: float = Field(1.0, gt=0, le=1e6)  # fan_in Var(w)
    sigma_b2: float = Field(0.0, ge=0, le=1e6)  # Var(b)


class PhaseSpec(_TheoryPart):
    """The phase diagram's grid: ``resolution`` x ``resolution`` over (0, sigma_w2_max] x [0, sigma_b2_max]."""

    resolution: int = Field(100, ge=4, le=400)
    sigma_w2_max: float = Field(4.0, gt=0, le=1e6)
    sigma_b2_max: float = Field(0.5, gt=0, le=1e6)


def load_file(path: str) -> dict:
    """A config file's mapping: YAML (.yaml/.yml) or TOML (.toml). ValueError for anything else."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ValueError(f"cannot read config file {path!r}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path!r} is not text") from None
    import tomllib

    try:
        if p.suffix == ".toml":
            loaded = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
        else:
            raise ValueError(f"config file {path!r}: expected a .yaml, .yml or .toml file")
    except ValueError as err:
        if not isinstance(err, tomllib.TOMLDecodeError):
            raise
        raise ValueError(f"config file {path!r} does not parse: {str(err).splitlines()[0]}") from None
    except Exception as err:  # yaml.YAMLError and friends: one line, with the parser's position
        raise ValueError(f"config file {path!r} does not parse: {str(err).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of field: value, not {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def _finite_message(field: str) -> str:
    """'must be a finite number >= 0': pydantic's finite-number error with the field's own bound."""
    for model in (PropagateConfig, TrainConfig, TheoryPoint, PhaseSpec):
        info = model.model_fields.get(field)
        for bound in info.metadata if info is not None else ():
            for attr, sign in (("ge", ">="), ("gt", ">")):
                if getattr(bound, attr, None) is not None:
                    return f"must be a finite number {sign} {getattr(bound, attr):g}"
    return "must be a finite number"


ECHO = 60  # characters of a bad value echoed back: a 10 MB value is named, not repeated


def echo(value) -> str:
    """``repr(value)``, cut to ``ECHO`` characters (with its full length) when longer."""
    text = repr(value)
    return text if len(text) <= ECHO else f"{text[:ECHO]}... ({len(text):,} characters)"


def describe_errors(err: ValidationError) -> list[dict]:
    """Every problem, each as {"field", "message"}: one line naming the field, the value as given
    (``echo``) and what is allowed, e.g. 'invalid depth=-1: Input should be greater than or equal to 1'."""
    found = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or None
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "finite_number":
            msg = _finite_message(field or "config")
        if e["type"] == "extra_forbidden":
            line = f"unknown field {field!r}"
        elif not e["loc"]:
            line = f"invalid configuration: {msg}"
        else:
            line = f"invalid {field}={echo(e.get('input'))}: {msg}"
        found.append({"field": field, "message": line})
    return found


def describe_error(err: ValidationError) -> str:
    """One line for the first problem (``describe_errors``)."""
    return describe_errors(err)[0]["message"]
