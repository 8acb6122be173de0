"""``hf-easyanimate`` console script: one sub-command per job."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A sub-command parser whose --help shows every default."""
    return argparse.ArgumentParser(
        prog=f"hf-easyanimate {prog}", description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def _train(argv: list[str]) -> int:
    from .train import main as train_main

    return train_main(argv, prog="hf-easyanimate train")


def _make_tiny_model(argv: list[str]) -> int:
    parser = _parser("make-tiny-model", "Write a tiny random EasyAnimate repo (the real checkpoints' on-disk layout) "
                     "for tests and demos. Its samples are noise by design: the weights are random.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--version", default="v5.1", choices=["v5.1", "v5", "v4", "v3", "v2"],
                        help="v5.1: Qwen2-VL; v5: BERT + T5; v4: HunyuanDiT video (BERT + T5); v3 / v2: PixArt-alpha "
                             "with motion modules (T5), in the layouts of their Hub releases.")
    parser.add_argument("--inpaint", action="store_true",
                        help="InP variant (image-to-video); v3 / v4 also get the CLIP image encoder. v2 has none.")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    from .testing import make_tiny_model

    if args.inpaint and args.version == "v2":
        parser.error("--inpaint: EasyAnimate V2 had no InP release; write v2 without --inpaint")
    make_tiny_model(args.output_dir, version=args.version, inpaint=args.inpaint, seed=args.seed)
    print(f"tiny EasyAnimate {args.version}{' InP' if args.inpaint else ''} model written to {args.output_dir}")
    return 0


def _make_tiny_clip(argv: list[str]) -> int:
    parser = _parser("make-tiny-clip", "Write a tiny random CLIP (model + processor, tokenizer built locally) for the "
                     "validation metrics in demos and tests (--validation_clip_model DIR). Its scores are "
                     "meaningless by design: the weights are random.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    from .testing import make_tiny_clip

    make_tiny_clip(args.output_dir, seed=args.seed)
    print(f"tiny CLIP written to {args.output_dir}")
    return 0


def _make_demo_data(argv: list[str]) -> int:
    parser = _parser("make-demo-data", "Write synthetic mp4 clips (moving coloured shapes), png images and an "
                     "EasyAnimate metadata.json describing them.")
    parser.add_argument("output_dir", help="folder to write (created)")
    parser.add_argument("--videos", type=int, default=8, help="number of clips")
    parser.add_argument("--images", type=int, default=4, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="seed of colours, shapes and motions")
    args = parser.parse_args(argv)
    from .testing import make_demo_data

    meta = make_demo_data(args.output_dir, videos=args.videos, images=args.images, seed=args.seed)
    print(f"{args.videos} videos and {args.images} images written; metadata: {meta}")
    return 0


def _export_lora(argv: list[str]) -> int:
    parser = _parser("export-lora", "Convert a LoRA between the peft adapter and the EasyAnimate/ComfyUI (kohya) file.")
    parser.add_argument("input", help="LoRA file, peft adapter folder, or training output / checkpoint-N folder.")
    parser.add_argument("--to", required=True, choices=["easyanimate", "peft"], help="Format to write.")
    parser.add_argument("output", help="easyanimate: a .safetensors file (or a folder); peft: a folder.")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="Cast the weights (default: keep the input's dtype, so the conversion is lossless).")
    parser.add_argument("--key_style", choices=["original", "diffusers"], default="original",
                        help="easyanimate only: module names of the original EasyAnimate transformer (attn2.*; "
                        "loads in EasyAnimate and ComfyUI) or of the diffusers one.")
    parser.add_argument("--overwrite", action="store_true", help="Replace the output file(s) if they exist.")
    args = parser.parse_args(argv)
    from .models.lora_files import export_lora, read_lora
    from .models.lora_format import LoraFormatError

    try:
        written = export_lora(args.input, args.to, args.output, dtype=args.dtype, key_style=args.key_style,
                              overwrite=args.overwrite)
        summary = read_lora(written[0]).summary() if args.to == "easyanimate" else read_lora(args.output).summary()
    except (LoraFormatError, ValueError) as error:
        print(f"hf-easyanimate export-lora: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:.2f} MiB)")
    print(summary)
    return 0


def trained_size(lora: str | None) -> tuple[dict, str | None]:
    """(num_frames, height, width) a LoRA was trained at, from the training_recipe.yaml beside it, and that path."""
    if not lora or not os.path.exists(lora):
        return {}, None
    from .args import DataArguments
    from .data.buckets import frames_on_vae_grid
    from .hub import RECIPE_NAME

    path = os.path.join(lora if os.path.isdir(lora) else os.path.dirname(lora), RECIPE_NAME)
    if not os.path.isfile(path):
        return {}, None
    import yaml

    with open(path, encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle) or {}
    defaults = DataArguments.__dataclass_fields__
    side = int(recipe.get("video_sample_size", defaults["video_sample_size"].default))
    frames = int(recipe.get("video_sample_n_frames", defaults["video_sample_n_frames"].default))
    return {"num_frames": frames_on_vae_grid(frames, 4), "height": side, "width": side}, path


def _sample(argv: list[str]) -> int:
    parser = _parser("sample", "Render a clip with diffusers' EasyAnimate pipeline and your LoRA, and write it as mp4.")
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
    args = parser.parse_args(argv)

    import torch

    from .utils.atomic import atomic_path
    from .inference import load_lora_into_pipeline, load_pipeline, render_video
    from .utils.media import write_mp4
    from .models.lora_format import LoraFormatError

    trained, source = trained_size(args.lora)
    for key, fallback in (("num_frames", 49), ("height", 512), ("width", 512)):
        if getattr(args, key) is None:
            setattr(args, key, trained.get(key, fallback))
    if source:
        print(f"size and frames from {source}: {args.width}x{args.height}, {args.num_frames} frames")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    try:
        if args.num_frames < 1 or (args.num_frames - 1) % 4:
            raise ValueError(f"--num_frames={args.num_frames}: the MagVIT VAE decodes 4n+1 frames (1, 5, 9, ..., 49)")
        if args.image is not None and not os.path.isfile(args.image):
            raise ValueError(f"--image {args.image}: no such file")
        pipe = load_pipeline(args.model, image_to_video=args.image is not None,
                             torch_dtype=getattr(torch, dtype_name), device=device)
        if args.lora:
            weights = load_lora_into_pipeline(pipe, args.lora, scale=args.lora_scale)
            print(f"LoRA {weights.source} merged at scale {args.lora_scale:g}: {weights.summary()}")
        frames = render_video(
            pipe, args.prompt, image=args.image, num_frames=args.num_frames, height=args.height, width=args.width,
            num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
            negative_prompt=args.negative_prompt, seed=args.seed,
        )
    except (LoraFormatError, ValueError, OSError) as error:  # OSError: model not found / not loadable
        print(f"hf-easyanimate sample: error: {error}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_path(args.out) as temporary:
        write_mp4(temporary, frames, fps=args.fps)
    print(f"wrote {args.out}: {frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}")
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


def _compare(argv: list[str]) -> int:
    from .compare import compare_main

    return compare_main(argv)


def _validate_data(argv: list[str]) -> int:
    from .data.commands import validate_data_main

    return validate_data_main(argv)


def _buckets(argv: list[str]) -> int:
    from .data.commands import buckets_main

    return buckets_main(argv)


def _plan_memory(argv: list[str]) -> int:
    from .memory.command import plan_memory_main

    return plan_memory_main(argv)


def _precompute(argv: list[str]) -> int:
    from .cache.setup import precompute_main

    return precompute_main(argv)


COMMANDS = {
    "train": (_train, "train a LoRA: hf-easyanimate train RECIPE.yaml [--flag value ...]"),
    "precompute": (_precompute, "encode latents + prompt embeddings once: precompute RECIPE.yaml --latent_cache_dir C"),
    "make-tiny-model": (_make_tiny_model, "write a tiny random EasyAnimate repo"),
    "make-demo-data": (_make_demo_data, "write a synthetic clip set with metadata.json"),
    "make-tiny-clip": (_make_tiny_clip, "write a tiny random CLIP for the validation metrics"),
    "export-lora": (_export_lora, "convert a LoRA: hf-easyanimate export-lora IN --to easyanimate|peft OUT"),
    "validate-data": (_validate_data, "check every row and file of a dataset: validate-data --train_data_meta M"),
    "buckets": (_buckets, "the bucket plan a run would use: hf-easyanimate buckets RECIPE.yaml [--json]"),
    "plan-memory": (_plan_memory, "predicted peak GPU memory and the flags that fit: plan-memory RECIPE.yaml "
                                  "[--gpu_memory_gb 24]"),
    "sample": (_sample, "render a clip with a LoRA: hf-easyanimate sample --model M --lora L --prompt P --out x.mp4"),
    "report": (_report, "plot the loss curves and collect validation samples of a run: hf-easyanimate report OUT_DIR"),
    "compare": (_compare, "which checkpoint is best: hf-easyanimate compare OUT_DIR --prompts P [P ...]"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"hf-easyanimate {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<18} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        text = ("usage: hf-easyanimate COMMAND [ARGS]   (hf-easyanimate COMMAND --help for its flags)\n\ncommands:\n"
                + "\n".join(lines) + "\n\n  --version          print the version")
        known = not argv or argv[0] in ("-h", "--help")
        if not known:
            close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
            text = f"hf-easyanimate: unknown command {argv[0]!r}" + (f"; did you mean {close[0]!r}?" if close else "") \
                + "\n" + text
        print(text, file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    handler, _ = COMMANDS[argv[0]]
    from .utils import quiet

    quiet.install()
    try:
        return handler(argv[1:])
    except KeyboardInterrupt:  # Ctrl-C while loading or writing: no traceback (training handles its own)
        print("\nhf-easyanimate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
