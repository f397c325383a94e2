#!/usr/bin/env bash
# The README's TensorBoard screenshot: a probed 6-layer tanh net with a small init (std 0.05), its
# run exported for TensorBoard, and the HISTOGRAMS dashboard rendered by headless Chromium.
# Needs: .venv built with the test extra (tensorboard), and Debian's chromium.
set -euo pipefail
work=$(mktemp -d)
.venv/bin/gradientflow train --data mnist1d --depth 6 --width 64 --activation tanh --init normal --std 0.05 \
    --optimizer sgd --lr 0.05 --epochs 8 --probe --out "$work/run" --quiet
.venv/bin/gradientflow runs export "$work/run" --tensorboard "$work/events"
.venv/bin/tensorboard --logdir "$work/events" --port 6123 --host 127.0.0.1 > "$work/tensorboard.log" 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 8
chromium --headless --no-sandbox --enable-unsafe-swiftshader --hide-scrollbars --window-size=1400,1000 \
    --virtual-time-budget=25000 --screenshot=docs/figures/tensorboard_histograms.png \
    "http://127.0.0.1:6123/?tagFilter=activations#histograms"
