"""``hf-easyanimate make-tiny-clip DIR``: a tiny random CLIP for the validation metrics in demos and tests."""

from __future__ import annotations

from ..testing import make_tiny_clip
from .common import subcommand_parser


def main(argv: list[str]) -> int:
    parser = subcommand_parser("make-tiny-clip", "Write a tiny random CLIP (model + processor, tokenizer built "
                               "locally) for the validation metrics in demos and tests (--validation_clip_model DIR). "
                               "Its scores are meaningless by design: the weights are random.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    make_tiny_clip(args.output_dir, seed=args.seed)
    print(f"tiny CLIP written to {args.output_dir}")
    return 0
