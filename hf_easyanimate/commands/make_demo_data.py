"""``hf-easyanimate make-demo-data DIR``: synthetic clips and images with an EasyAnimate metadata.json."""

from __future__ import annotations

from ..testing import make_demo_data
from .common import subcommand_parser


def main(argv: list[str]) -> int:
    parser = subcommand_parser("make-demo-data", "Write synthetic mp4 clips (moving coloured shapes), png images and "
                               "an EasyAnimate metadata.json describing them.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--videos", type=int, default=8, help="number of clips")
    parser.add_argument("--images", type=int, default=4, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="seed of colours, shapes and motions")
    args = parser.parse_args(argv)
    meta = make_demo_data(args.output_dir, videos=args.videos, images=args.images, seed=args.seed)
    print(f"{args.videos} videos and {args.images} images written; metadata: {meta}")
    return 0
