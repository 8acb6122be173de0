"""``hf-easyanimate`` and ``python -m hf_easyanimate.cli``: the console script. Its sub-commands are in ``commands/``."""

from __future__ import annotations

import sys

from .commands import COMMANDS, main
from .utils.deprecation import moved_name

__all__ = ["COMMANDS", "main"]


def __getattr__(name: str):  # the 0.1 helpers of this module (trained_size, ...), now in commands/ and inference/
    return moved_name(__name__, name)


if __name__ == "__main__":
    sys.exit(main())
