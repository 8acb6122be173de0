"""``hf-easyanimate compare OUT_DIR --prompts P [P ...]``: which checkpoint of a run is best, in numbers and a grid."""

from __future__ import annotations

import os
import sys

from ..inference.compare import COMPARE_DIR, GRID_NAME, RESULT_NAME, CompareError, compare
from ..metrics import CLIP_METRICS
from ..metrics.clip import DEFAULT_CLIP_MODEL, ClipModelError
from ..models.lora.format import LoraFormatError
from .common import subcommand_parser


def main(argv: list[str]) -> int:
    parser = subcommand_parser("compare", "Sample the same prompts with the same seeds for the base model and every "
                     "checkpoint-N of a run, score them with CLIP, write OUTPUT_DIR/compare/compare_grid.png and "
                     "compare.json, and name the best checkpoint. Rerunning reuses the clips already sampled.")
    parser.add_argument("output_dir", help="the --output_dir of a training run")
    parser.add_argument("--prompts", nargs="+", required=True, help="prompts, or text files with one per line")
    parser.add_argument("--image", default=None, help="first frame (image-to-video; an InP checkpoint)")
    parser.add_argument("--metric", default="text_alignment", choices=list(CLIP_METRICS),
                        help="what 'best' means (higher is better)")
    parser.add_argument("--checkpoints", nargs="+", default=None, help="only these checkpoint-N folders")
    parser.add_argument("--model", default=None, help="base model (default: the one the run trained on)")
    parser.add_argument("--clip_model", "--validation_clip_model", dest="clip_model", default=DEFAULT_CLIP_MODEL,
                        help="CLIP model that scores the clips (--validation_clip_model, train's name, works too)")
    parser.add_argument("--num_frames", type=int, default=None, help="default: the run's training frames, else 49")
    parser.add_argument("--height", type=int, default=None, help="default: the run's training size, else 512")
    parser.add_argument("--width", type=int, default=None, help="default: the run's training size, else 512")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per clip")
    parser.add_argument("--guidance_scale", type=float, default=6.0, help="classifier-free guidance scale")
    parser.add_argument("--negative_prompt", default="", help="negative prompt")
    parser.add_argument("--lora_scale", type=float, default=1.0, help="LoRA strength (1.0 = as trained)")
    parser.add_argument("--seed", type=int, default=42, help="seed of prompt 0 (prompt i uses seed + i)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="default: bfloat16 on cuda, float32 on cpu")
    args = parser.parse_args(argv)
    if args.image is not None and not os.path.isfile(args.image):
        print(f"hf-easyanimate compare: error: --image {args.image}: no such file", file=sys.stderr)
        return 2
    try:
        result = compare(args)
    except (CompareError, ClipModelError, LoraFormatError, OSError, ValueError) as error:
        print(f"hf-easyanimate compare: error: {error}", file=sys.stderr)
        return 2
    root = os.path.join(args.output_dir, COMPARE_DIR)
    if result["best"]:
        print(f"best by {args.metric}: {result['best']}   (grid: {os.path.join(root, GRID_NAME)}, "
              f"table: {os.path.join(root, RESULT_NAME)})")
    else:
        print(f"no checkpoint could be scored; see {os.path.join(root, RESULT_NAME)}")
    return 0
