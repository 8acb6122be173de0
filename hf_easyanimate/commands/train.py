"""``hf-easyanimate train RECIPE.yaml [--flag value ...]`` (also ``python -m hf_easyanimate.train``): train a LoRA."""

from __future__ import annotations

from collections.abc import Sequence

from ..assembly import run
from ..trainers.lora_config import ARGUMENT_CLASSES, parse_args
from .common import training_command

DESCRIPTION = (
    "Train a LoRA on an EasyAnimate transformer. Start from a recipe in recipes/ (recipes/tiny/cpu_demo.yaml "
    "runs on a CPU in a minute, after `hf-easyanimate make-tiny-model tiny-model` and `hf-easyanimate "
    "make-demo-data demo-data`); every flag of the original train_lora.py works under its original name."
)


def main(argv: Sequence[str] | None = None, prog: str = "hf-easyanimate train") -> int:
    return training_command(argv, prog, DESCRIPTION, ARGUMENT_CLASSES, parse_args, run)
