"""Typed, validated configurations: checked once, at the edge (CLI, file, API).

A validation failure becomes one line that names the field, the value and what
is allowed (``describe_error``); everything downstream trusts the values.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from . import activations, init, optim, schedules
from . import data as datasets  # 'data' is also a field name below

MAX_ELEMENTS = 1 << 28  # batch x width x depth floats kept for histograms: 1 GiB of float32


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: float | None, *, positive: bool) -> float | None:
    if value is None:
        return value
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"must be a finite number {'> 0' if positive else '>= 0'}")
    return value


# field -> (the allowed names, what the error calls them)
_CHOICES = {
    "activation": (activations.NAMES, "activation"),
    "init": (init.NAMES, "initialiser"),
    "normalize": (datasets.NORMALIZATIONS, "normalization"),
    "optimizer": (optim.OPTIMIZERS, "optimizer"),
    "schedule": (schedules.SCHEDULES, "schedule"),
}


def _one_of(value: str, field: str) -> str:
    allowed, what = _CHOICES[field]
    if value not in allowed:
        raise ValueError(f"unknown {what}; expected one of: {', '.join(allowed)}")
    return value


class PropagateConfig(_Config):
    """A forward pass of unit-Gaussian data through a fresh ``mlp`` (C15-C17)."""

    activation: str = "tanh"
    init: str = "xavier"
    std: float | None = None  # normal/uniform: weight std (C15 uses 0.01 and 1)
    gain: float | None = None  # xavier/lecun/orthogonal: multiplies the std
    value: float | None = None  # constant: the value of every weight
    depth: int = Field(10, ge=1, le=1000)
    width: int = Field(500, ge=1, le=100_000)
    batch: int = Field(1000, ge=1, le=1_000_000)
    pieces: int = Field(2, ge=1, le=16)  # maxout
    bias: bool = True
    seed: int = Field(0, ge=0, le=2**63 - 1)

    @field_validator("activation", "init")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        return _one_of(v, info.field_name)

    @field_validator("std")
    @classmethod
    def _std(cls, v: float | None) -> float | None:
        return _finite(v, positive=False)

    @field_validator("gain")
    @classmethod
    def _gain(cls, v: float | None) -> float | None:
        return _finite(v, positive=True)

    @field_validator("value")
    @classmethod
    def _value(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _size(self) -> "PropagateConfig":
        n = self.batch * self.width * self.depth * (self.pieces if self.activation == "maxout" else 1)
        if n > MAX_ELEMENTS:
            raise ValueError(f"batch x width x depth = {n:,} values is too large; at most {MAX_ELEMENTS:,}")
        return self

    def scale(self) -> init.Scale:
        """The initialiser's scale parameters (defaults where not given)."""
        base = init.Scale()
        return init.Scale(gain=base.gain if self.gain is None else self.gain,
                          std=base.std if self.std is None else self.std,
                          value=base.value if self.value is None else self.value)


class TrainConfig(_Config):
    """Everything that defines a training run (the engine's input; stored as the run's config.json).

    The seeds' optimiser hyper-parameters: ``lr`` is alpha, ``momentum`` is mu (momentum, or
    Adam's first-moment decay beta1), ``rho`` is the second-moment decay (RMSProp's alpha, Adam's
    beta2), ``eps`` is delta; None means the optimiser's default (see ``optim``).
    """

    # data
    data: str = "mnist1d"
    n_train: int | None = Field(None, ge=1, le=datasets.MAX_SAMPLES)
    n_test: int | None = Field(None, ge=1, le=datasets.MAX_SAMPLES)
    noise: float = Field(0.1, ge=0, le=10)
    data_seed: int | None = Field(None, ge=0, le=2**32 - 1)
    normalize: str = "standardize"
    # model (an mlp; depth = hidden layers, 0 = logistic regression)
    depth: int = Field(2, ge=0, le=1000)
    width: int = Field(100, ge=1, le=100_000)
    activation: str = "relu"
    init: str = "he"
    std: float | None = None
    gain: float | None = None
    # optimiser
    optimizer: str = "adam"
    lr: float = Field(1e-3, gt=0, le=1e3)
    momentum: float | None = Field(None, ge=0, lt=1)
    rho: float | None = Field(None, ge=0, lt=1)
    eps: float | None = Field(None, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1e3)
    clip_norm: float | None = Field(None, gt=0)
    clip_value: float | None = Field(None, gt=0)
    schedule: str = "constant"
    step_size: int | None = Field(None, ge=1)
    gamma: float | None = Field(None, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    # loop
    epochs: int = Field(20, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    checkpoint_every: int | None = Field(None, ge=1)  # steps; None: at the end of every epoch
    device: str = "cpu"
    # probes (issue 4): sample every probe_every-th step; a window of statistics per probe_window steps
    probe: bool = False
    probe_every: int = Field(1, ge=1)
    probe_window: int | None = Field(None, ge=1)  # None: one window per epoch

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        return datasets.check_spec(v)

    @field_validator("normalize", "activation", "init", "optimizer", "schedule")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        return _one_of(v, info.field_name)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("cpu", "cuda", "auto") and not v.startswith("cuda:"):
            raise ValueError("unknown device; expected cpu, cuda, cuda:N or auto")
        return v

    @field_validator("std", "gain")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        return _finite(v, positive=False)

    @field_validator("noise", "lr", "weight_decay", "clip_norm", "clip_value", "gamma", "momentum", "rho", "eps")
    @classmethod
    def _no_nan(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.momentum is not None and self.optimizer not in optim.USES_MU:
            raise ValueError(f"momentum applies to {', '.join(optim.USES_MU)}, not to optimizer={self.optimizer}")
        if self.rho is not None and self.optimizer not in optim.USES_RHO:
            raise ValueError(f"rho applies to {', '.join(optim.USES_RHO)}, not to optimizer={self.optimizer}")
        if self.eps is not None and self.optimizer not in optim.DEFAULT_DELTA:
            raise ValueError(f"eps applies to {', '.join(optim.DEFAULT_DELTA)}, not to optimizer={self.optimizer}")
        return self

    def scale(self) -> init.Scale:
        """The initialiser's scale parameters (defaults where not given)."""
        base = init.Scale()
        return init.Scale(gain=base.gain if self.gain is None else self.gain,
                          std=base.std if self.std is None else self.std)


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
    try:
        if p.suffix == ".toml":
            import tomllib

            loaded = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
        else:
            raise ValueError(f"config file {path!r}: expected a .yaml, .yml or .toml file")
    except ValueError:
        raise
    except Exception as err:  # yaml.YAMLError and friends: one line, with the parser's position
        raise ValueError(f"config file {path!r} does not parse: {str(err).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of field: value, not {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def describe_error(err: ValidationError) -> str:
    """One line for the first problem: 'invalid depth=-1: Input should be greater than or equal to 1'."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown field {field!r}"
    if not first["loc"]:
        return f"invalid configuration: {msg}"
    return f"invalid {field}={first.get('input')!r}: {msg}"
