"""``hf-easyanimate validate-data [RECIPE.yaml] --train_data_meta M``: every row and file checked before GPU hours."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

import numpy as np
from transformers import HfArgumentParser

from ..config import DataArguments, RecipeError, load_recipe
from ..data.metadata import MetadataError, load_metadata
from ..data.pipeline import check_files, frame_sampling, outside_data_dir_note
from ..data.problems import format_problem_table

VALIDATE_DESCRIPTION = (
    "Check every row and file of a dataset up front (what --strict_data does before training): missing "
    "file_path, bad text or type, missing/empty/corrupt/too-short video, unreadable image. Prints a table of "
    "problems; exit status 1 if there is any. Accepts a recipe YAML and any data flag (stride and frame count "
    "decide what is too short)."
)


def _data_arguments(argv: list[str], prog: str, description: str, extra: argparse.ArgumentParser):
    """DataArguments from [RECIPE.yaml] [--data flags]; ``extra`` holds the command's own options."""
    own, rest = extra.parse_known_args(argv)
    recipe = {}
    if rest and not rest[0].startswith("-"):
        recipe, rest = load_recipe(rest[0]), rest[1:]
    parser = HfArgumentParser(DataArguments, prog=prog, description=description)
    names = {f.name for f in fields(DataArguments)}
    parser.set_defaults(**{key: value for key, value in recipe.items() if key in names})
    (data_args,) = parser.parse_args_into_dataclasses(rest)
    return data_args, own


def main(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--json", action="store_true", help="Print the result as JSON.")
    if any(arg in ("-h", "--help") for arg in argv):
        print("usage: hf-easyanimate validate-data [RECIPE.yaml] --train_data_meta M [--train_data_dir D] "
              "[--json] [data flags]\n\n" + VALIDATE_DESCRIPTION)
        return 0
    try:
        data_args, own = _data_arguments(argv, "hf-easyanimate validate-data", VALIDATE_DESCRIPTION, extra)
        meta = load_metadata(data_args.train_data_meta, data_args.train_data_dir, data_args.max_train_samples,
                             data_args.data_cache_dir)
    except (MetadataError, RecipeError, ValueError) as error:
        print(f"hf-easyanimate validate-data: error: {error}", file=sys.stderr)
        return 2
    problems = meta.problems()
    rows = np.flatnonzero(meta.usable)
    problems += check_files(meta, rows, frame_sampling(data_args), data_args.data_check_workers)
    problems = sorted(set(problems))
    _print_report(meta, problems, own.json)
    return 1 if problems else 0


def _print_report(meta, problems: list, as_json: bool) -> None:
    videos = int((meta.kinds[: len(meta)] == 1).sum())
    outside = meta.rows_outside_data_dir()
    if as_json:
        print(json.dumps({
            "metadata": meta.source, "rows": len(meta), "videos": videos, "images": len(meta) - videos,
            "problems": [p._asdict() for p in problems],
            "outside_data_dir": [{"row": int(row), "file_path": meta.raw_path(int(row))} for row in outside],
        }, indent=2))
    else:
        print(f"{meta.source}: {len(meta)} rows ({videos} video, {len(meta) - videos} image or unknown), "
              f"{len(problems)} problem(s)")
        if problems:
            print(format_problem_table(problems))
        note = outside_data_dir_note(meta, outside)
        if note:
            print(f"note: {note}")
