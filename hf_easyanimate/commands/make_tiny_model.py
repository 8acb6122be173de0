"""``hf-easyanimate make-tiny-model DIR [--version V] [--inpaint]``: a tiny random checkpoint in the layout of a
real release (every family writes its own), for tests and demos."""

from __future__ import annotations

from ..models.family import family_named, tiny_versions
from .common import subcommand_parser


def main(argv: list[str]) -> int:
    versions = tiny_versions()
    parser = subcommand_parser("make-tiny-model", "Write a tiny random EasyAnimate repo (the real checkpoints' "
                               "on-disk layout) for tests and demos. Its samples are noise by design: the weights "
                               "are random.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--version", default=next(iter(versions)), choices=list(versions),
                        help="; ".join(f"{name}: {summary}" for name, summary in versions.items())
                        + ", in the layouts of their Hub releases.")
    parser.add_argument("--inpaint", action="store_true",
                        help="InP variant (image-to-video); v3 / v4 also get the CLIP image encoder. v2 has none.")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    family = family_named(args.version)
    if args.inpaint and not family.has_inpaint_release:
        parser.error(f"--inpaint: {family.title} had no InP release; write {args.version} without --inpaint")
    family.write_tiny(args.output_dir, inpaint=args.inpaint, seed=args.seed)
    print(f"tiny EasyAnimate {args.version}{' InP' if args.inpaint else ''} model written to {args.output_dir}")
    return 0
