"""The lab set-up that shows each claim live, as a link (the report's "open in the lab").

Plain data: the page's controls as a URL query (``LabConfig`` fields). Each set-up was checked in
the lab to show what its claim says (tests/test_lab.py follows C7's and C15's).
"""

from __future__ import annotations

from urllib.parse import urlencode

BASE = "http://localhost:8000/"
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # the names of this machine alone: the lab's default reach
_RELU_EDGE = {"data": "mnist1d", "depth": 4, "width": 100, "init": "he", "optimizer": "adam", "alpha": 0.05,
              "batch_size": 32}
SETUPS: dict[str, dict] = {
    "C1": {"depth": 6, "activation": "sigmoid", "init": "normal", "std": 1.0},  # saturated sigmoids
    "C2": {"depth": 10, "activation": "sigmoid", "init": "xavier"},  # the gradient shrinks layer by layer
    "C3": {"depth": 8, "activation": "relu", "init": "he", "alpha": 0.5, "clip": 1.0},  # clipping holds it
    "C4": {"depth": 3, "activation": "sigmoid", "init": "xavier"},  # zig-zag: one sign per unit
    "C5": {"depth": 3, "activation": "tanh", "init": "xavier"},
    "C7": {**_RELU_EDGE, "activation": "relu"},  # ReLUs die at a high rate
    "C8": {**_RELU_EDGE, "activation": "leaky_relu"},  # ... leaky ones do not
    "C10": {"optimizer": "momentum", "alpha": 0.05, "mu": 0.9},
    "C11": {"optimizer": "adagrad", "alpha": 0.05},
    "C12": {"optimizer": "rmsprop", "alpha": 0.005, "rho": 0.99},
    "C13": {"optimizer": "adam", "alpha": 0.005, "mu": 0.9, "rho": 0.999},
    "C14": {"depth": 3, "activation": "tanh", "init": "zeros"},  # every unit the same
    "C15": {"depth": 10, "width": 64, "activation": "tanh", "init": "normal", "std": 0.01},  # the collapse
    "C16": {"depth": 10, "width": 64, "activation": "relu", "init": "xavier"},  # Xavier shrinks ReLU nets
    "C17": {"depth": 10, "width": 64, "activation": "relu", "init": "he"},  # He holds them
    "C18": {"depth": 10, "width": 64, "activation": "tanh", "init": "xavier"},
    "C19": {"depth": 3, "activation": "relu", "init": "he", "normalize": "none", "data": "digits"},
    "C20": {"depth": 4, "activation": "relu", "init": "he", "schedule": "cosine", "alpha": 0.2},
    "C21": {"depth": 6, "activation": "relu", "init": "he", "data": "mnist1d"},
    "X1": {"data": "mnist1d", "depth": 50, "width": 64, "activation": "tanh", "init": "critical", "sigma_b2": 0.05,
           "alpha": 0.01},  # trainable at depth 50 on the critical line
}


def link(claim_id: str, base: str = BASE) -> str | None:
    """The lab's URL for ``claim_id``'s set-up, or None where the lab has none (C6, C9: Maxout)."""
    setup = SETUPS.get(claim_id)
    return None if setup is None else f"{base}?{urlencode(setup)}"
