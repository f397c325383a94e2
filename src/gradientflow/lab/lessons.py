"""One-click lessons: the seeds' claims as guided set-ups of the lab, each with what to watch.

A lesson is a claim's set-up from ``links.SETUPS`` (the report's "open in the lab" uses the same) and
one sentence that says where on the page the claim shows. Plain data, served to the page by
``/options``; tests/test_lab.py checks that every set-up passes the server's checks and follows one
lesson in a browser.
"""

from __future__ import annotations

from .links import SETUPS

_WATCH = [
    ("C2", "Sigmoid layers pass back at most a quarter of the gradient",
     "In ‖∂L/∂h‖ per layer, the early layers (dark) sit decades below the late ones (light)."),
    ("C3", "Exploding gradients and clipping",
     "Set clip to 0 and press play: the loss spikes and the page reports the step and layer where "
     "the values stopped being finite. With clip = 1 the same net trains."),
    ("C7", "ReLUs die at a high learning rate",
     "The dead share per layer climbs past half within a few hundred steps and does not come back."),
    ("C8", "Leaky ReLUs do not die",
     "The same set-up as the dying ReLUs: the dead share per layer stays at zero."),
    ("C14", "All-zero weights: every unit the same",
     "The activation std by layer is zero after the first layer, and the loss does not move."),
    ("C15", "Small random weights collapse a deep tanh net",
     "The measured activation std falls by decades from layer to layer, as the theory at "
     "initialisation says; the gradient of the first layer vanishes."),
    ("C16", "Xavier shrinks ReLU nets",
     "The activation std halves its variance at each layer: a straight falling line on the log axis."),
    ("C17", "He initialisation holds ReLU nets",
     "The activation std stays level across the ten layers; compare with the Xavier lesson's ghost."),
    ("C19", "Unnormalised inputs slow training",
     "Change inputs from none to standardize: the loss falls much faster (the previous run stays "
     "as a ghost)."),
    ("X1", "Depth 50 on the critical line",
     "The phase diagram's point sits on the critical line; the gradient reaches the first of 50 layers."),
]

LESSONS = [{"id": cid, "title": title, "watch": watch, "setup": SETUPS[cid]} for cid, title, watch in _WATCH]
