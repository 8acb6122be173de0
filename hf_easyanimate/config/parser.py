"""``RECIPE.yaml [--flag value ...]`` -> the argument dataclasses of a trainer (its config says which).

Built on ``HfArgumentParser``: the recipe's values become the parser's defaults, so any flag on the
command line wins. Unknown keys (in the recipe or on the command line) fail before anything heavy
happens, naming the key and the closest valid one. Nothing here reads the checkpoint: rules that need it run
once it is read (:mod:`hf_easyanimate.assembly.preflight`).
"""

from __future__ import annotations

import difflib
import os
import sys
from argparse import ArgumentError, ArgumentTypeError
from collections.abc import Sequence
from typing import Any

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from ..utils.secrets import is_secret
from .dialect import TRANSLATED, LegacyFlagConflict, same_cli_value, translate_legacy
from .rules import ArgumentValidationError


class RecipeError(ValueError):
    """The recipe or command line cannot be turned into arguments; the message says why and where."""


class _ArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` whose errors are exceptions carrying one line, never a usage dump and ``exit(2)``.

    The callers print the line and exit 2 themselves, so a typo in one of ~300 flags does not bury the reason
    under the full usage text.
    """

    def error(self, message: str):
        raise RecipeError(message)


def build_parser(classes: Sequence[type]) -> HfArgumentParser:
    return _ArgumentParser(tuple(classes), allow_abbrev=False, exit_on_error=False, add_help=False)


HELP_FLAGS = ("-h", "--help")


def wants_help(argv: Sequence[str]) -> bool:
    """``-h``/``--help`` anywhere among the flags (not as the value of another flag, which flags never take)."""
    return any(token in HELP_FLAGS for token in argv)


def split_recipe(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(recipe path or None, the remaining flags): the recipe is the first ``*.yaml`` positional or ``--config``."""
    return _split_config([token for token in argv if token not in HELP_FLAGS])


def known_keys(parser: HfArgumentParser) -> set[str]:
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
        if key not in TRANSLATED:
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


def _targets(key: str, value: Any) -> list[tuple[str, Any]]:
    """The field(s) a key sets and the raw value each gets (original flag names translated)."""
    if key in TRANSLATED:
        return list(TRANSLATED[key].translate(value).items())
    return [(key, value)]


def _expected(action) -> str:
    """What a flag's value must look like, for error messages."""
    if action.choices is not None:
        return "one of " + ", ".join(str(choice) for choice in action.choices)
    if action.type is string_to_bool:
        return "true or false"
    if action.type is int:
        return "an integer"
    if action.type is float:
        return "a number (e.g. 1e-4)"
    return "a string"


def check_value(action, value: Any, key: str, recipe: str | None = None) -> None:
    """Convert ``value`` as argparse would for ``action``; a failure is one line naming the flag (or recipe key),
    the value, where it came from and what was expected."""
    if value is None or (isinstance(value, bool) and action.type in (string_to_bool, None)):
        return
    scalar = action.nargs in (None, "?")
    shown = "<redacted>" if is_secret(key) else value
    source = f"{key}: {shown!r} in recipe {recipe}" if recipe else f"--{key} {shown!r} on the command line"

    def fail(got: str = "") -> RecipeError:
        return RecipeError(f"{source}: expected {_expected(action)}{got}")

    if isinstance(value, dict) or (scalar and isinstance(value, list)):
        count = f" of {len(value)} values" if isinstance(value, list) else ""
        raise fail(f", got a {type(value).__name__}{count}")
    for item in value if isinstance(value, list) else [value]:
        try:
            converted = action.type(str(item)) if action.type is not None else str(item)
        except (ValueError, TypeError, ArgumentTypeError):
            raise fail() from None
        if action.choices is not None and converted not in action.choices:
            raise fail()


def _check_unknown(keys: Sequence[str], valid: set[str], where: str) -> None:
    for key in keys:
        if key not in valid and key not in TRANSLATED:
            raise RecipeError(f"unknown key `{key}` in {where}{_suggest(key, valid | set(TRANSLATED))}")


def _prepared_parser(argv: Sequence[str] | None, classes: Sequence[type]) -> tuple[HfArgumentParser, list[str]]:
    """The parser with the recipe's values as defaults, and the command line with original names translated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(classes)
    valid = known_keys(parser)

    recipe_path, cli = _split_config(argv)
    recipe: dict[str, Any] = {}
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    if recipe_path is not None:
        recipe = load_recipe(recipe_path)
        _check_unknown(recipe, valid, f"recipe {recipe_path}")
        for key, value in recipe.items():
            for target, converted in _targets(key, value):
                check_value(actions[target], converted, key, recipe=recipe_path)
        recipe = translate_legacy(recipe)

    pairs = _cli_to_pairs(cli)
    _check_unknown([key for key, _ in pairs], valid, "the command line")
    for key, values in pairs:
        value: Any = values[0] if len(values) == 1 else values
        if key in TRANSLATED:
            value = values[0] if len(values) == 1 else (values or True)
        for target, converted in _targets(key, value):
            if converted != []:  # a bare boolean flag
                check_value(actions[target], converted, key)
    cli = _translate_cli(cli, valid)

    # Recipe values become defaults; argparse converts string defaults with the field's type, so a YAML
    # "1e-4" (a string to PyYAML) becomes a float exactly as on the command line.
    parser.set_defaults(**{key: _as_default(value) for key, value in recipe.items()})
    for action in parser._actions:
        if action.dest in recipe and action.required:
            action.required = False
    return parser, cli


def parse_dataclasses(argv: Sequence[str] | None, classes: Sequence[type]) -> tuple:
    """Parse ``[RECIPE.yaml | --config RECIPE.yaml] [--flag value ...]`` into one instance of each of ``classes``."""
    parser, cli = _prepared_parser(argv, classes)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=cli, look_for_args_file=False))
    except (ArgumentValidationError, RecipeError):
        raise
    except (ValueError, ArgumentError) as error:  # argparse ("expected one argument") or a dataclass rule
        raise RecipeError(str(error)) from error


def parse_flag_values(argv: Sequence[str] | None, classes: Sequence[type]) -> dict[str, Any]:
    """Every flag's value after recipe + command line, without building the dataclasses.

    For tools that plan a run (``hf-easyanimate buckets``, ``plan-memory``) on a machine that could not run it:
    building ``TrainingArguments`` sets up the launch (DeepSpeed, devices) of the process.
    """
    parser, cli = _prepared_parser(argv, classes)
    try:
        return vars(parser.parse_args(cli))
    except (ValueError, ArgumentError) as error:
        raise RecipeError(str(error)) from error


def _as_default(value: Any) -> Any:
    # Lists stay lists (nargs fields); everything else goes through argparse's string conversion.
    if isinstance(value, (list, dict, bool)) or value is None:
        return value
    return str(value)
