"""``hf-easyanimate validate-data`` and ``hf-easyanimate buckets``: look at the data before spending GPU hours."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

import numpy as np

VALIDATE_DESCRIPTION = (
    "Check every row and file of a dataset up front (what --strict_data does before training): missing "
    "file_path, bad text or type, missing/empty/corrupt/too-short video, unreadable image. Prints a table of "
    "problems; exit status 1 if there is any. Accepts a recipe YAML and any data flag (stride and frame count "
    "decide what is too short)."
)
BUCKETS_DESCRIPTION = (
    "Print the bucket plan a run would use: per bucket (type, aspect ratio) its height, width, frames and "
    "sample count, and with --training_with_video_token_length the frames-per-resolution table."
)


def _data_arguments(argv: list[str], prog: str, description: str, extra: argparse.ArgumentParser):
    """DataArguments from [RECIPE.yaml] [--data flags]; ``extra`` holds the command's own options."""
    from transformers import HfArgumentParser

    from ..args import DataArguments
    from ..parser import load_recipe

    own, rest = extra.parse_known_args(argv)
    recipe = {}
    if rest and not rest[0].startswith("-"):
        recipe, rest = load_recipe(rest[0]), rest[1:]
    parser = HfArgumentParser(DataArguments, prog=prog, description=description)
    names = {f.name for f in fields(DataArguments)}
    parser.set_defaults(**{key: value for key, value in recipe.items() if key in names})
    (data_args,) = parser.parse_args_into_dataclasses(rest)
    return data_args, own


def validate_data_main(argv: list[str]) -> int:
    from ..parser import RecipeError
    from .metadata import MetadataError, load_metadata
    from .pipeline import check_files, frame_sampling, outside_data_dir_note
    from .problems import format_problem_table

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
    videos = int((meta.kinds[: len(meta)] == 1).sum())
    outside = meta.rows_outside_data_dir()
    if own.json:
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
    return 1 if problems else 0


def buckets_main(argv: list[str]) -> int:
    from ..args import DataArguments
    from ..parser import RecipeError, parse_values
    from .metadata import MetadataError
    from .pipeline import bucket_plan, format_bucket_plan, prepare_index
    from .plan import PlanConfig

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--json", action="store_true", help="Print the plan as JSON.")
    extra.add_argument("--num_processes", type=int, default=1, help="Data-parallel processes (GPUs) to plan for.")
    extra.add_argument("--temporal_compression", type=int, default=4,
                       help="The VAE's temporal compression (4 for every EasyAnimate MagVIT VAE).")
    if any(arg in ("-h", "--help") for arg in argv):
        print("usage: hf-easyanimate buckets RECIPE.yaml [--json] [--num_processes N] [--flag value ...]\n\n"
              + BUCKETS_DESCRIPTION)
        return 0
    own, rest = extra.parse_known_args(argv)
    try:
        values = parse_values(rest)
        data_args = DataArguments(**{f.name: values[f.name] for f in fields(DataArguments)})
        config = PlanConfig.from_data_args(data_args, own.temporal_compression)
        meta = index = problems = None
        if data_args.train_data_meta:
            meta, index, problems = prepare_index(data_args, strict=False)
        report = bucket_plan(meta, index, config, values["per_device_train_batch_size"], own.num_processes, problems,
                             remainder=data_args.bucket_remainder)
    except (MetadataError, RecipeError, ValueError) as error:
        print(f"hf-easyanimate buckets: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if own.json else format_bucket_plan(report))
    return 0
