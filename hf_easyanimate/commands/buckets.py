"""``hf-easyanimate buckets RECIPE.yaml``: the bucket plan a run would use, per bucket and per epoch."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ..config import DataArguments, RecipeError
from ..data.metadata import MetadataError
from ..data.pipeline import bucket_plan, format_bucket_plan, prepare_index
from ..data.plan import PlanConfig
from ..trainers.lora_config import parse_values

BUCKETS_DESCRIPTION = (
    "Print the bucket plan a run would use: per bucket (type, aspect ratio) its height, width, frames and "
    "sample count, and with --training_with_video_token_length the frames-per-resolution table."
)


def main(argv: list[str]) -> int:
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
