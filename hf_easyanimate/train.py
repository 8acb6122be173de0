"""``python -m hf_easyanimate.train RECIPE.yaml [--flag value ...]``: the torchrun / accelerate target, where the
original's ``scripts/train_lora.py`` stood. The run itself is :func:`hf_easyanimate.assembly.run`."""

from __future__ import annotations

import sys

from .commands.train import main
from .utils.deprecation import moved_name

__all__ = ["main"]


def __getattr__(name: str):  # run, build_objective, ... of 0.1: now in hf_easyanimate.assembly
    return moved_name(__name__, name)


if __name__ == "__main__":
    sys.exit(main(prog="python -m hf_easyanimate.train"))
