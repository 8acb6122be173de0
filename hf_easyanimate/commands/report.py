"""``hf-easyanimate report OUT_DIR``: the loss curves of a run and its latest validation contact sheet."""

from __future__ import annotations

import argparse
import sys

from ..training.report import ReportError, render


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-easyanimate report",
        description="Plot train/eval loss over steps (from trainer_state.json) and collect the latest validation "
        "contact sheet into OUT_DIR/report/.",
    )
    parser.add_argument("output_dir", help="the --output_dir of a training run")
    args = parser.parse_args(argv)
    try:
        paths = render(args.output_dir)
    except ReportError as error:
        print(f"hf-easyanimate report: error: {error}", file=sys.stderr)
        return 2
    print(f"loss plot: {paths.loss_plot}  (from {paths.trainer_state})")
    if paths.validation_sheet:
        print(f"validation contact sheet (step {paths.validation_step}): {paths.validation_sheet}")
    else:
        print("no validation samples yet (train with --validation_prompts to get them)")
    return 0
