"""``hf-easyanimate sample --model M --lora L --prompt P --out x.mp4``: render one clip with a LoRA."""

from __future__ import annotations

import argparse
import os
import sys

from ..inference import load_lora_into_pipeline, load_pipeline, render_video, trained_size
from ..models.lora.format import LoraFormatError
from ..utils.atomic import atomic_path
from ..utils.media import write_mp4
from .common import subcommand_parser


def _parser() -> argparse.ArgumentParser:
    parser = subcommand_parser("sample", "Render a clip with diffusers' EasyAnimate pipeline and your LoRA, and write "
                               "it as mp4.")
    parser.add_argument("--model", required=True, help="Base model: Hub id or diffusers-layout folder.")
    parser.add_argument("--lora", default=None, help="LoRA file or folder (either format); omit for the base model.")
    parser.add_argument("--lora_scale", type=float, default=1.0, help="LoRA strength (1.0 = as trained).")
    parser.add_argument("--prompt", required=True, help="what to render")
    parser.add_argument("--negative_prompt", default="", help="Negative prompt for classifier-free guidance.")
    parser.add_argument("--image", default=None,
                        help="First frame (image-to-video; needs an InP checkpoint). The rest is generated.")
    parser.add_argument("--out", required=True, help="Output .mp4 path.")
    parser.add_argument("--num_frames", type=int, default=None,
                        help="Frames to render (4n+1: 1, 5, 9, ..., 49). Default: the LoRA's training frames "
                        "(its training_recipe.yaml), else 49.")
    parser.add_argument("--height", type=int, default=None,
                        help="Frame height in pixels. Default: the LoRA's training size, else 512.")
    parser.add_argument("--width", type=int, default=None,
                        help="Frame width in pixels. Default: the LoRA's training size, else 512.")
    parser.add_argument("--steps", type=int, default=50, help="Denoising steps.")
    parser.add_argument("--guidance_scale", type=float, default=6.0, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=42, help="seed of the initial noise")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the mp4")
    parser.add_argument("--device", default=None, help="Default: cuda when available, else cpu.")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="Default: bfloat16 on cuda, float32 on cpu.")
    return parser


def _render(args):
    """The clip's frames; ValueError / OSError / LoraFormatError for anything the user can fix."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if args.num_frames < 1 or (args.num_frames - 1) % 4:
        raise ValueError(f"--num_frames={args.num_frames}: the MagVIT VAE decodes 4n+1 frames (1, 5, 9, ..., 49)")
    if args.image is not None and not os.path.isfile(args.image):
        raise ValueError(f"--image {args.image}: no such file")
    pipe = load_pipeline(args.model, image_to_video=args.image is not None, torch_dtype=getattr(torch, dtype_name),
                         device=device)
    if args.lora:
        weights = load_lora_into_pipeline(pipe, args.lora, scale=args.lora_scale)
        print(f"LoRA {weights.source} merged at scale {args.lora_scale:g}: {weights.summary()}")
    return render_video(
        pipe, args.prompt, image=args.image, num_frames=args.num_frames, height=args.height, width=args.width,
        num_inference_steps=args.steps, guidance_scale=args.guidance_scale, negative_prompt=args.negative_prompt,
        seed=args.seed,
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    trained, source = trained_size(args.lora)
    for key, fallback in (("num_frames", 49), ("height", 512), ("width", 512)):
        if getattr(args, key) is None:
            setattr(args, key, trained.get(key, fallback))
    if source:
        print(f"size and frames from {source}: {args.width}x{args.height}, {args.num_frames} frames")
    try:
        frames = _render(args)
    except (LoraFormatError, ValueError, OSError) as error:  # OSError: model not found / not loadable
        print(f"hf-easyanimate sample: error: {error}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_path(args.out) as temporary:
        write_mp4(temporary, frames, fps=args.fps)
    print(f"wrote {args.out}: {frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}")
    return 0
