"""The README's two `watch` examples: an LSTM classifier and a Transformer encoder, each trained for
a few steps on random data under `gf.watch`. Writes their findings to docs/examples/watch_output.txt
and the LSTM's gradient-through-time figure to docs/figures/time_gradients.png.

Run: .venv/bin/python docs/examples/watch.py
"""

from pathlib import Path

import torch
from torch import nn

import gradientflow as gf
from gradientflow import plots

HERE = Path(__file__).resolve().parent


class Classifier(nn.Module):
    """Two stacked LSTM layers over 50 steps; the class is read from the last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.encoder, self.head = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(64, 4)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def train(model, x, y, steps=60):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with gf.watch(model, every=5, window=20) as probe:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        probe.flush()
    return probe


def main() -> None:
    torch.manual_seed(0)
    lines = []
    lstm = train(Classifier(), torch.randn(64, 50, 8), torch.randint(0, 4, (64,)))
    encoder = Encoder()
    with torch.no_grad():  # query and key projections initialised 6x too large: logits 36x
        for layer in encoder.encoder.layers:
            layer.self_attn.in_proj_weight[:128].mul_(6.0)
    transformer = train(encoder, torch.randn(32, 16, 64), torch.randint(0, 4, (32,)))
    for title, probe in (("LSTM", lstm), ("Transformer", transformer)):
        lines.append(f"# {title}")
        for f in probe.findings():
            lines += [f"- {f.kind}: {f.message}", f"  try: {f.recommendation}"]
    (HERE / "watch_output.txt").write_text("\n".join(lines) + "\n")
    fig = plots.time_gradients(lstm.history().to_dict("records"))
    plots.save(fig, HERE.parent / "figures", "time_gradients", formats=("png",))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
