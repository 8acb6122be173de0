"""What every command shares: its argparse parser, usage and ``--help`` for recipe commands, and one mapping from
the errors a run can meet to a one-line message and an exit status (2: fix your flags or files; 1: the run failed;
130/143: interrupted). Commands import this module, never each other."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..assembly.preflight import PreflightError
from ..cache import CacheMissError
from ..config import ArgumentValidationError, RecipeError, load_recipe, translate_legacy
from ..config.dialect import LegacyFlagConflict
from ..config.flagdocs import format_help
from ..config.parser import build_parser, split_recipe, wants_help
from ..data import DataValidationError, EmptyEpochError, MetadataError
from ..metrics.clip import ClipModelError
from ..models.errors import IncompatibleFlagError, ModelLoadError
from ..models.lora import LoraTargetError
from ..models.original_config import ModelConfigMismatch
from ..training.guards import CheckpointSaveError, NonFiniteLossError
from ..training.outputs import OutputDirError
from ..training.peers import PeerLostError, shutdown
from ..training.resume import CheckpointNotFound, NothingToTrain
from ..training.run_lock import FolderLockedError
from ..training.signals import TrainingInterrupted
from ..utils import quiet

# Raised before step 1 by a mistake the user can fix: one line and exit status 2, never a traceback.
USAGE_ERRORS = (
    RecipeError, ArgumentValidationError, LegacyFlagConflict, PreflightError, OutputDirError, CheckpointNotFound,
    ModelConfigMismatch, LoraTargetError, MetadataError, DataValidationError, EmptyEpochError, CacheMissError,
    ClipModelError, IncompatibleFlagError, FolderLockedError,
)
# The run cannot go on (unsupported model, divergence, a checkpoint that failed to write): one line, exit status 1.
RUN_ERRORS = (ModelLoadError, NonFiniteLossError, CheckpointSaveError)


def subcommand_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A sub-command parser whose --help shows every default."""
    return argparse.ArgumentParser(
        prog=f"hf-easyanimate {prog}", description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def error(prog: str, message: object) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def usage(prog: str) -> str:
    return (
        f"usage: {prog} RECIPE.yaml [--flag value ...]\n"
        f"       {prog} --pretrained_model_name_or_path MODEL --train_data_meta META --train_data_dir DIR [...]\n"
        f"Recipes are in recipes/ (try recipes/tiny/cpu_demo.yaml); `{prog} --help` lists every flag."
    )


def early_exit(argv: Sequence[str], prog: str, description: str, classes: Sequence[type]) -> int | None:
    """``--help`` (printed, 0), nothing to run (usage, 2), or None to go on: what a recipe command does first."""
    argv = list(argv)
    if wants_help(argv):
        recipe_path, _ = split_recipe(argv)
        recipe: dict[str, Any] = {}
        if recipe_path is not None:
            try:
                recipe = translate_legacy(load_recipe(recipe_path))
            except (RecipeError, ValueError) as problem:
                print(f"{prog}: note: {problem}", file=sys.stderr)
                recipe_path = None
        print(format_help(prog, description, build_parser(classes), classes, recipe, recipe_path), end="")
        return 0
    if not argv:
        print(usage(prog), file=sys.stderr)
        return 2
    recipe_path, rest = split_recipe(argv)
    if recipe_path is not None and not rest and os.path.isfile(recipe_path):
        try:
            empty = not load_recipe(recipe_path)
        except RecipeError:
            return None  # the parser reports it
        if empty:
            print(f"{prog}: error: recipe {recipe_path} is empty: nothing to train\n{usage(prog)}", file=sys.stderr)
            return 2
    return None


def _aborted(output_dir: str) -> int:
    """Ctrl-C before training started, or a second Ctrl-C during it: where the last good checkpoint is."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    print("\nhf-easyanimate: aborted" + (f"; the last complete checkpoint is {last}" if last else ""), file=sys.stderr)
    return 130


def training_command(argv: Sequence[str] | None, prog: str, description: str, classes: Sequence[type],
                     parse: Callable[[list[str]], tuple], run: Callable[..., Any]) -> int:
    """A training command from argv to exit status: help and usage, parse (exit 2 on a bad flag), ``run(*parsed)``,
    and every error a run can meet as one line (see :data:`USAGE_ERRORS`, :data:`RUN_ERRORS`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet.install()
    code = early_exit(argv, prog, description, classes)
    if code is not None:
        return code
    try:
        parsed = parse(argv)
    except ValueError as problem:  # RecipeError, ArgumentValidationError, LegacyFlagConflict
        print(f"hf-easyanimate: error: {problem}", file=sys.stderr)
        return 2
    args = parsed[-1]
    quiet.deepspeed_in_use(bool(args.deepspeed))
    try:
        run(*parsed)
    except NothingToTrain as done:
        print(f"hf-easyanimate: {done}", file=sys.stderr)
        return 0
    except TrainingInterrupted as stopped:
        if args.should_log:
            print(f"hf-easyanimate: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:
        return _aborted(args.output_dir)
    except USAGE_ERRORS as problem:
        print(f"hf-easyanimate: error: {problem}", file=sys.stderr)
        return 2
    except RUN_ERRORS as problem:
        print(f"hf-easyanimate: error: {problem}", file=sys.stderr)
        return 1
    except PeerLostError:  # printed where it surfaced, before the launcher's SIGTERM could end this process
        return 1
    shutdown()
    return 0
