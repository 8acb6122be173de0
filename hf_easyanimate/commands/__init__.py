"""The ``hf-easyanimate`` console script: one module per sub-command, each parsing its flags and calling the library.

A command module has ``main(argv) -> exit status`` and one line in :data:`COMMANDS`; shared CLI helpers live in
:mod:`.common`. Modules are imported when their command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

# command -> (module under hf_easyanimate.commands, its line in --help), in the order --help lists them
COMMANDS = {
    "train": ("train", "train a LoRA: hf-easyanimate train RECIPE.yaml [--flag value ...]"),
    "precompute": ("precompute",
                   "encode latents + prompt embeddings once: precompute RECIPE.yaml --latent_cache_dir C"),
    "make-tiny-model": ("make_tiny_model", "write a tiny random EasyAnimate repo"),
    "make-demo-data": ("make_demo_data", "write a synthetic clip set with metadata.json"),
    "make-tiny-clip": ("make_tiny_clip", "write a tiny random CLIP for the validation metrics"),
    "export-lora": ("export_lora", "convert a LoRA: hf-easyanimate export-lora IN --to easyanimate|peft OUT"),
    "validate-data": ("validate_data", "check every row and file of a dataset: validate-data --train_data_meta M"),
    "buckets": ("buckets", "the bucket plan a run would use: hf-easyanimate buckets RECIPE.yaml [--json]"),
    "plan-memory": ("plan_memory", "predicted peak GPU memory and the flags that fit: plan-memory RECIPE.yaml "
                                   "[--gpu_memory_gb 24]"),
    "sample": ("sample", "render a clip with a LoRA: hf-easyanimate sample --model M --lora L --prompt P --out x.mp4"),
    "report": ("report",
               "plot the loss curves and collect validation samples of a run: hf-easyanimate report OUT_DIR"),
    "compare": ("compare", "which checkpoint is best: hf-easyanimate compare OUT_DIR --prompts P [P ...]"),
}


def command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")


def _overview(unknown: str | None) -> str:
    lines = [f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    text = ("usage: hf-easyanimate COMMAND [ARGS]   (hf-easyanimate COMMAND --help for its flags)\n\ncommands:\n"
            + "\n".join(lines) + "\n\n  --version          print the version")
    if unknown is not None:
        close = difflib.get_close_matches(unknown, list(COMMANDS), n=1)
        text = f"hf-easyanimate: unknown command {unknown!r}" + (f"; did you mean {close[0]!r}?" if close else "") \
            + "\n" + text
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from .. import __version__

        print(f"hf-easyanimate {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = not argv or argv[0] in ("-h", "--help")
        print(_overview(None if known else argv[0]), file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    from ..utils import quiet

    quiet.install()
    try:
        return command_module(argv[0]).main(argv[1:])
    except KeyboardInterrupt:  # Ctrl-C while loading or writing: no traceback (training handles its own)
        print("\nhf-easyanimate: interrupted", file=sys.stderr)
        return 130
