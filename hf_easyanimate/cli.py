"""``hf-easyanimate`` console script: one sub-command per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _train(argv: list[str]) -> int:
    from .train import main as train_main

    return train_main(argv)


def _make_tiny_model(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-easyanimate make-tiny-model",
        description="Write a tiny random EasyAnimate repo (diffusers layout) for tests and demos.",
    )
    parser.add_argument("output_dir")
    parser.add_argument("--version", default="v5.1", choices=["v5.1"])
    parser.add_argument("--inpaint", action="store_true", help="InP variant (image-to-video).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .testing import make_tiny_model

    make_tiny_model(args.output_dir, version=args.version, inpaint=args.inpaint, seed=args.seed)
    print(f"tiny EasyAnimate {args.version}{' InP' if args.inpaint else ''} model written to {args.output_dir}")
    return 0


def _make_demo_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-easyanimate make-demo-data",
        description="Write synthetic mp4 clips, png images and an EasyAnimate metadata.json.",
    )
    parser.add_argument("output_dir")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .testing import make_demo_data

    meta = make_demo_data(args.output_dir, videos=args.videos, images=args.images, seed=args.seed)
    print(f"{args.videos} videos and {args.images} images written; metadata: {meta}")
    return 0


def _report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-easyanimate report",
        description="Plot train/eval loss over steps (from trainer_state.json) and collect the latest validation "
        "contact sheet into OUT_DIR/report/.",
    )
    parser.add_argument("output_dir", help="the --output_dir of a training run")
    args = parser.parse_args(argv)
    from .report import ReportError, render

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


COMMANDS = {
    "train": (_train, "train a LoRA: hf-easyanimate train RECIPE.yaml [--flag value ...]"),
    "make-tiny-model": (_make_tiny_model, "write a tiny random EasyAnimate repo"),
    "make-demo-data": (_make_demo_data, "write a synthetic clip set with metadata.json"),
    "report": (_report, "plot the loss curves and collect validation samples of a run: hf-easyanimate report OUT_DIR"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: hf-easyanimate COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    handler, _ = COMMANDS[argv[0]]
    return handler(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
