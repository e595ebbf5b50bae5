"""``python -m export CHECKPOINT``: the same as ``bedside export``."""

from .cli import export

export()
