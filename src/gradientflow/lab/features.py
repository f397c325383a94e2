"""Feature crosses for the 2-D sets, as the TensorFlow Playground offers them: the net's first
module computes the chosen functions of the two inputs, so that the data, the decision boundary
and the neurons' maps all stay in the plane (x1, x2)."""

from __future__ import annotations

import torch

FEATURES = {  # name -> the feature of the (normalised) inputs x [n, 2]
    "x1": lambda x: x[:, 0], "x2": lambda x: x[:, 1],
    "x1^2": lambda x: x[:, 0] ** 2, "x2^2": lambda x: x[:, 1] ** 2, "x1x2": lambda x: x[:, 0] * x[:, 1],
    "sin(x1)": lambda x: torch.sin(x[:, 0]), "sin(x2)": lambda x: torch.sin(x[:, 1]),
}
PLAIN = "x1,x2"


def parse(text: str) -> list[str]:
    """The comma-separated feature names, checked: ValueError naming an unknown one or an empty list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature {unknown[0]!r}; expected some of: {', '.join(FEATURES)}")
    if not names:
        raise ValueError(f"choose at least one feature of: {', '.join(FEATURES)}")
    if len(set(names)) < len(names):
        raise ValueError("a feature is listed twice")
    return names


class Crosses(torch.nn.Module):
    """x [n, 2] -> [n, len(names)]: the chosen features, in order (no parameters)."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([FEATURES[n](x) for n in self.names], 1)

    def extra_repr(self) -> str:
        return ", ".join(self.names)
