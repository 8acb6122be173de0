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
    parser.add_argument("--version", default="v5.1", choices=["v5.1", "v5"], help="v5.1: Qwen2-VL; v5: BERT + T5.")
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


COMMANDS = {
    "train": (_train, "train a LoRA: hf-easyanimate train RECIPE.yaml [--flag value ...]"),
    "make-tiny-model": (_make_tiny_model, "write a tiny random EasyAnimate repo"),
    "make-demo-data": (_make_demo_data, "write a synthetic clip set with metadata.json"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: hf-easyanimate COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    handler, _help = COMMANDS[argv[0]]
    return handler(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
