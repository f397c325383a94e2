"""Where gradientflow meets the tools people already train and look with. Each module imports its
tool only when used, so the base package needs none of them: ``tensorboard`` (a stored run as
event files)."""
