"""Typed, validated configurations: checked once, at the edge (CLI, file, API).

A validation failure becomes one line that names the field, the value and what
is allowed (``describe_error``); everything downstream trusts the values.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import activations, init

MAX_ELEMENTS = 1 << 28  # batch x width x depth floats kept for histograms: 1 GiB of float32


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: float | None, *, positive: bool) -> float | None:
    if value is None:
        return value
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"must be a finite number {'> 0' if positive else '>= 0'}")
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

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        if v not in activations.NAMES:
            raise ValueError(f"unknown activation; expected one of: {', '.join(activations.NAMES)}")
        return v

    @field_validator("init")
    @classmethod
    def _known_init(cls, v: str) -> str:
        if v not in init.NAMES:
            raise ValueError(f"unknown initialiser; expected one of: {', '.join(init.NAMES)}")
        return v

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
