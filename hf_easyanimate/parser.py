"""``RECIPE.yaml [--flag value ...]`` -> (ModelArguments, DataArguments, EasyAnimateTrainingArguments).

Built on ``HfArgumentParser``: the recipe's values become the parser's defaults, so any flag on the
command line wins. Unknown keys (in the recipe or on the command line) fail before anything heavy
happens, naming the key and the closest valid one.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from transformers import HfArgumentParser

from .args import (
    ArgumentValidationError,
    DataArguments,
    EasyAnimateTrainingArguments,
    ModelArguments,
    check_combination,
)
from .legacy import LEGACY_FLAGS, LegacyFlagConflict, same_cli_value, translate_legacy

ARGUMENT_CLASSES = (ModelArguments, DataArguments, EasyAnimateTrainingArguments)


class RecipeError(ValueError):
    """The recipe or command line cannot be turned into arguments; the message says why and where."""


def build_parser() -> HfArgumentParser:
    return HfArgumentParser(ARGUMENT_CLASSES, allow_abbrev=False)


def known_keys(parser: HfArgumentParser | None = None) -> set[str]:
    parser = parser or build_parser()
    return {action.dest for action in parser._actions if action.dest != "help"}


def _suggest(key: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a flat YAML recipe into a dict, with errors that name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except FileNotFoundError as error:
        raise RecipeError(f"recipe {path} does not exist") from error
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path} is not valid YAML: {error}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise RecipeError(f"recipe {path} must be a mapping of flag: value, got {type(content).__name__}")
    return content


def _split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """Pull the recipe path out of ``argv``: first positional ``*.yaml``/``*.yml`` or ``--config PATH``."""
    rest = list(argv)
    for index, token in enumerate(rest):
        if token == "--config":
            if index + 1 >= len(rest):
                raise RecipeError("--config needs a recipe path")
            path = rest[index + 1]
            del rest[index : index + 2]
            return path, rest
        if token.startswith("--config="):
            del rest[index]
            return token.split("=", 1)[1], rest
    if rest and not rest[0].startswith("-"):
        return rest[0], rest[1:]
    return None, rest


def _cli_to_pairs(argv: list[str]) -> list[tuple[str, list[str]]]:
    """Group ``--key v1 v2 --flag`` into [(key, [v1, v2]), (flag, [])], keeping ``--key=v`` forms."""
    pairs: list[tuple[str, list[str]]] = []
    for token in argv:
        if token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            pairs.append((key, [value] if eq else []))
        elif pairs:
            pairs[-1][1].append(token)
        else:
            raise RecipeError(f"unexpected argument {token!r}; flags look like --name value")
    return pairs


def _translate_cli(argv: list[str], valid: set[str]) -> list[str]:
    """Rewrite original flag names on the command line (``--train_batch_size 1`` -> ``--per_device_...``)."""
    pairs = _cli_to_pairs(argv)
    explicit = {key for key, _ in pairs}
    rewritten: list[str] = []
    for key, values in pairs:
        if key not in LEGACY_FLAGS:
            # One value stays glued to its flag (`--key=value`) so argparse never reads `-1e-4` as a flag.
            rewritten += [f"--{key}={values[0]}"] if len(values) == 1 else [f"--{key}", *values]
            continue
        value: Any = values[0] if len(values) == 1 else (values or True)
        for new_key, new_value in translate_legacy({key: value}, explicit_keys=set()).items():
            if new_key in explicit:
                other = next(v for k, v in pairs if k == new_key)
                if not same_cli_value(new_value, other):
                    raise LegacyFlagConflict(
                        f"--{key} and --{new_key} are the same setting under two names and disagree; keep one."
                    )
            rewritten += [f"--{new_key}"] + ([] if new_value is True else [str(new_value)])
    return rewritten


def _check_unknown(keys: Sequence[str], valid: set[str], where: str) -> None:
    for key in keys:
        if key not in valid and key not in LEGACY_FLAGS:
            raise RecipeError(f"unknown key `{key}` in {where}{_suggest(key, valid | set(LEGACY_FLAGS))}")


def _prepared_parser(argv: Sequence[str] | None) -> tuple[HfArgumentParser, list[str]]:
    """The parser with the recipe's values as defaults, and the command line with original names translated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    valid = known_keys(parser)

    recipe_path, cli = _split_config(argv)
    recipe: dict[str, Any] = {}
    if recipe_path is not None:
        recipe = load_recipe(recipe_path)
        _check_unknown(recipe, valid, f"recipe {recipe_path}")
        recipe = translate_legacy(recipe)

    cli_keys = [key for key, _ in _cli_to_pairs(cli)]
    _check_unknown(cli_keys, valid, "the command line")
    cli = _translate_cli(cli, valid)

    # Recipe values become defaults; argparse converts string defaults with the field's type, so a YAML
    # "1e-4" (a string to PyYAML) becomes a float exactly as on the command line.
    parser.set_defaults(**{key: _as_default(value) for key, value in recipe.items()})
    for action in parser._actions:
        if action.dest in recipe and action.required:
            action.required = False
    return parser, cli


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, EasyAnimateTrainingArguments]:
    """Parse ``[RECIPE.yaml | --config RECIPE.yaml] [--flag value ...]`` into the three dataclasses."""
    parser, cli = _prepared_parser(argv)
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=cli, look_for_args_file=False)
    except ArgumentValidationError:
        raise
    except ValueError as error:
        raise RecipeError(str(error)) from error
    check_combination(model_args, data_args, training_args)
    return model_args, data_args, training_args


def parse_values(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Every flag's value after recipe + command line, without building the dataclasses.

    For tools that plan a run (``hf-easyanimate buckets``) on a machine that could not run it: building
    ``TrainingArguments`` checks devices (bf16 without a GPU fails there).
    """
    parser, cli = _prepared_parser(argv)
    try:
        return vars(parser.parse_args(cli))
    except ValueError as error:
        raise RecipeError(str(error)) from error


def _as_default(value: Any) -> Any:
    # Lists stay lists (nargs fields); everything else goes through argparse's string conversion.
    if isinstance(value, (list, dict, bool)) or value is None:
        return value
    return str(value)
