"""The seeds' optimiser formulas (C10-C13) as plain NumPy, written from CLAIMS.md and nothing else.

Each function takes the parameters, the gradient, a state dict (empty at the first step) and the
hyper-parameters by the seeds' names, and returns the new parameters. The tests compare torch's
optimisers with these, step by step.
"""

import numpy as np


def sgd(theta, g, state, *, alpha, wd=0.0):
    g = g + wd * theta
    return theta - alpha * g


def momentum(theta, g, state, *, alpha, mu, wd=0.0):
    """C10: v <- mu v + g; theta <- theta - alpha v."""
    g = g + wd * theta
    state["v"] = mu * state.get("v", 0.0) + g
    return theta - alpha * state["v"]


def nesterov(theta, g, state, *, alpha, mu, wd=0.0):
    """Nesterov in the same variables: v <- mu v + g; theta <- theta - alpha (g + mu v)."""
    g = g + wd * theta
    state["v"] = mu * state.get("v", 0.0) + g
    return theta - alpha * (g + mu * state["v"])


def adagrad(theta, g, state, *, alpha, delta, wd=0.0):
    """C11: r <- r + g^2; theta <- theta - alpha / (sqrt(r) + delta) * g."""
    g = g + wd * theta
    state["r"] = state.get("r", 0.0) + g * g
    return theta - alpha / (np.sqrt(state["r"]) + delta) * g


def rmsprop(theta, g, state, *, alpha, rho, delta, wd=0.0):
    """C12: r <- rho r + (1 - rho) g^2; theta <- theta - alpha / (sqrt(r) + delta) * g."""
    g = g + wd * theta
    state["r"] = rho * state.get("r", 0.0) + (1 - rho) * g * g
    return theta - alpha / (np.sqrt(state["r"]) + delta) * g


def adam(theta, g, state, *, alpha, mu, rho, delta, wd=0.0, decoupled=False, bias_correction=True, correct_r=None):
    """C13: v <- mu v + (1-mu) g; r <- rho r + (1-rho) g^2; v~ = v / (1 - mu^t), r~ = r / (1 - rho^t);
    theta <- theta - alpha v~ / (sqrt(r~) + delta). ``decoupled``: AdamW's theta <- theta (1 - alpha wd) first."""
    if decoupled:
        theta = theta * (1 - alpha * wd)
    else:
        g = g + wd * theta
    t = state["t"] = state.get("t", 0) + 1
    state["v"] = mu * state.get("v", 0.0) + (1 - mu) * g
    state["r"] = rho * state.get("r", 0.0) + (1 - rho) * g * g
    v, r = state["v"], state["r"]
    if bias_correction:
        v = v / (1 - mu**t)
    if bias_correction if correct_r is None else correct_r:
        r = r / (1 - rho**t)
    return theta - alpha * v / (np.sqrt(r) + delta)
