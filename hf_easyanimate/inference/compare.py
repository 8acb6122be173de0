"""``hf-easyanimate compare OUTPUT_DIR --prompts ...``: which checkpoint is best, in numbers and one picture.

The same prompts are sampled with the same seeds for the base model (no LoRA) and for every ``checkpoint-N`` of
a run (or the ones named); each row is scored with the CLIP metrics of :mod:`hf_easyanimate.metrics`, the best
checkpoint is named by ``--metric``, and ``OUTPUT_DIR/compare/`` receives one grid PNG (rows: base, checkpoints;
columns: prompts; a few frames each, labelled), ``compare.json`` and the clips. A rerun with the same settings
reuses every clip already sampled, so an interrupted comparison continues where it stopped; a checkpoint that
fails to load is reported in its row and the others are still compared.

LoRAs are merged into the pipeline's transformer and subtracted again after their row (EasyAnimate's merge
rule; in bfloat16 the round trip is exact up to rounding, which is far below what the metrics resolve).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..utils.atomic import atomic_path
from ..utils.media import enlarged, pick_frames, printable, write_mp4, write_png

COMPARE_DIR = "compare"
RESULT_NAME = "compare.json"
GRID_NAME = "compare_grid.png"
BASE_ROW = "base"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CompareError(ValueError):
    """Nothing to compare, or no way to sample; the message says what was looked for."""


@dataclass
class Row:
    name: str  # "base" or "checkpoint-N"
    lora: str | None  # folder holding the LoRA (None for the base model)
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    videos: list[np.ndarray] = field(default_factory=list, repr=False)


def find_rows(output_dir: str, names: list[str] | None = None) -> list[Row]:
    """The base row and one per checkpoint (by step), or per named checkpoint; a run without checkpoints but with
    a final LoRA compares that LoRA."""
    if not os.path.isdir(output_dir):
        raise CompareError(f"{output_dir} is not a folder; pass the --output_dir of a training run")
    found = sorted(
        (int(match.group(1)), name) for name in os.listdir(output_dir)
        if (match := _CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    if names:
        missing = [name for name in names if not os.path.isdir(os.path.join(output_dir, name))]
        if missing:
            raise CompareError(f"{output_dir}: no {', '.join(missing)} (found: {', '.join(n for _, n in found) or 'none'})")
        found = [(int(_CHECKPOINT.match(n).group(1)) if _CHECKPOINT.match(n) else None, n) for n in names]
    rows = [Row(name, os.path.join(output_dir, name), step) for step, name in found]
    if not rows:
        lora_files = ("adapter_model.safetensors", "easyanimate_lora.safetensors")
        if any(os.path.isfile(os.path.join(output_dir, name)) for name in lora_files):
            rows = [Row("final", output_dir)]
        else:
            raise CompareError(
                f"{output_dir}: nothing to compare: no checkpoint-N folders and no LoRA "
                f"({' or '.join(lora_files)}); is this a training --output_dir?"
            )
    return [Row(BASE_ROW, None), *rows]


def base_model_of(output_dir: str, rows: list[Row]) -> str | None:
    """The model a run trained on: its recipe's --pretrained_model_name_or_path, else the adapter's base."""
    import yaml

    recipe = os.path.join(output_dir, "training_recipe.yaml")
    if os.path.isfile(recipe):
        with open(recipe, encoding="utf-8") as handle:
            model = (yaml.safe_load(handle) or {}).get("pretrained_model_name_or_path")
        if model:
            return str(model)
    for row in rows:
        config = os.path.join(row.lora or "", "adapter_config.json")
        if row.lora and os.path.isfile(config):
            with open(config, encoding="utf-8") as handle:
                model = json.load(handle).get("base_model_name_or_path")
            if model:
                return str(model)
    return None


def read_prompts(values: list[str]) -> list[str]:
    """``--prompts``: texts, or files holding one prompt per line."""
    prompts: list[str] = []
    for value in values:
        if os.path.isfile(value):
            with open(value, encoding="utf-8") as handle:
                prompts += [line.strip() for line in handle if line.strip()]
        else:
            prompts.append(value)
    if not prompts:
        raise CompareError("--prompts gave no prompt")
    return prompts


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _cached_videos(folder: str, fingerprint: str, count: int) -> list[np.ndarray] | None:
    """The clips of an earlier run of the same comparison, if all are there."""
    import decord

    info = os.path.join(folder, "row.json")
    if not os.path.isfile(info):
        return None
    with open(info, encoding="utf-8") as handle:
        if json.load(handle).get("settings") != fingerprint:
            return None
    paths = [os.path.join(folder, f"prompt-{i:02d}.mp4") for i in range(count)]
    if not all(os.path.isfile(path) for path in paths):
        return None
    return [decord.VideoReader(path)[:].asnumpy() for path in paths]


def grid_image(rows: list[Row], prompts: list[str], frames_per_cell: int = 4) -> np.ndarray:
    """Rows (base, checkpoints) x columns (prompts), each cell ``frames_per_cell`` frames; labelled."""
    from PIL import Image, ImageDraw

    from ..utils.media import caption_font

    font = caption_font()
    shown = [row for row in rows if row.videos]
    cells = [[enlarged(row.videos[i][pick_frames(len(row.videos[i]), frames_per_cell)]) for i in range(len(prompts))]
             for row in shown]
    cell_h = max(cell.shape[1] for line in cells for cell in line)
    cell_w = max(cell.shape[0] * cell.shape[2] for line in cells for cell in line)
    label_w, header_h, gap = 220, 26, 6
    width = label_w + len(prompts) * (cell_w + gap)
    height = header_h + len(shown) * (cell_h + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for column, prompt in enumerate(prompts):
        text = printable(prompt)
        draw.text((label_w + column * (cell_w + gap) + 4, 4), text if len(text) <= 60 else text[:57] + "...",
                  fill=(0, 0, 0), font=font)
    for line, (row, cell_row) in enumerate(zip(shown, cells)):
        top = header_h + line * (cell_h + gap)
        score = ", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in row.metrics.items())
        draw.text((4, top + 4), row.name, fill=(0, 0, 0), font=font)
        draw.text((4, top + 26), score, fill=(60, 60, 60), font=font)
        for column, cell in enumerate(cell_row):
            strip = np.concatenate(list(cell), axis=1)
            canvas.paste(Image.fromarray(strip), (label_w + column * (cell_w + gap), top))
    return np.asarray(canvas)


def table(rows: list[Row], metric: str, best: str | None) -> str:
    keys = ["text_alignment", "temporal_consistency"]
    lines = [f"{'row':<18} " + " ".join(f"{key:>21}" for key in keys)]
    for row in rows:
        if row.error:
            lines.append(f"{row.name:<18} failed: {row.error}")
            continue
        mark = "   <- best " + metric if row.name == best else ""
        lines.append(f"{row.name:<18} " + " ".join(f"{row.metrics.get(key, float('nan')):>21.4f}" for key in keys)
                     + mark)
    return "\n".join(lines)


def _sample_row(pipe, row: Row, folder: str, fingerprint: str, prompts: list[str], args) -> list[np.ndarray]:
    """The row's clips: reused when a rerun with the same settings wrote them, else sampled (LoRA merged for the
    row and taken out again) and written, then read back, so a rerun scores exactly the same pixels."""
    from .lora_merge import load_lora_into_pipeline, unmerge_lora
    from .render import render_video

    videos = _cached_videos(folder, fingerprint, len(prompts))
    if videos is not None:
        return videos
    weights = load_lora_into_pipeline(pipe, row.lora, args.lora_scale) if row.lora else None
    try:
        videos = [render_video(pipe, prompt, image=args.image, num_frames=args.num_frames, height=args.height,
                               width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                               negative_prompt=args.negative_prompt, seed=args.seed + index)
                  for index, prompt in enumerate(prompts)]
    finally:
        if weights is not None:
            unmerge_lora(pipe, weights, args.lora_scale)
    os.makedirs(folder, exist_ok=True)
    for index, video in enumerate(videos):
        write_mp4(os.path.join(folder, f"prompt-{index:02d}.mp4"), video)
    with atomic_path(os.path.join(folder, "row.json")) as temporary, open(temporary, "w") as handle:
        json.dump({"settings": fingerprint, "lora": row.lora}, handle)
    return _cached_videos(folder, fingerprint, len(prompts))


def _settings(args, rows: list[Row], prompts: list[str], model: str):
    """Sizes default to the run's training size; the fingerprint of everything that decides the clips."""
    import torch

    from .render import trained_size

    size, _ = trained_size(rows[-1].lora)
    for key, fallback in (("num_frames", 49), ("height", 512), ("width", 512)):
        if getattr(args, key) is None:
            setattr(args, key, size.get(key, fallback))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    settings = {key: getattr(args, key) for key in ("num_frames", "height", "width", "steps", "guidance_scale",
                                                    "seed", "image", "negative_prompt", "lora_scale")}
    settings.update(model=model, prompts=prompts, dtype=str(dtype))
    return settings, device, dtype


def compare(args: argparse.Namespace) -> dict:
    """Sample, score and report; returns what ``compare.json`` holds."""
    from tqdm.auto import tqdm

    from ..metrics.clip import ClipEmbedder, clip_metrics
    from ..models.pipelines import load_pipeline

    rows = find_rows(args.output_dir, args.checkpoints)
    prompts = read_prompts(args.prompts)
    model = args.model or base_model_of(args.output_dir, rows)
    if not model:
        raise CompareError(f"{args.output_dir}: the base model is not recorded (no training_recipe.yaml or "
                           "adapter_config.json naming it); pass --model")
    settings, device, dtype = _settings(args, rows, prompts, model)
    embedder = ClipEmbedder.load(args.clip_model)
    pipe = load_pipeline(model, image_to_video=args.image is not None, torch_dtype=dtype, device=device)
    fingerprint = _fingerprint(settings)
    root = os.path.join(args.output_dir, COMPARE_DIR)
    for row in tqdm(rows, desc="Comparing", unit="row"):
        try:
            row.videos = _sample_row(pipe, row, os.path.join(root, row.name), fingerprint, prompts, args)
            row.metrics = clip_metrics(embedder, row.videos, prompts)
        except Exception as error:  # a broken checkpoint must not end the comparison
            row.error = f"{type(error).__name__}: {str(error)[:200]}"
    scored = [row for row in rows if row.name != BASE_ROW and not row.error and args.metric in row.metrics]
    best = max(scored, key=lambda row: row.metrics[args.metric]).name if scored else None
    result = {
        "metric": args.metric,
        "best": best,
        "rows": [{"name": row.name, "step": row.step, "lora": row.lora, **row.metrics, "error": row.error}
                 for row in rows],
        "settings": settings,
    }
    os.makedirs(root, exist_ok=True)
    with atomic_path(os.path.join(root, RESULT_NAME)) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, ensure_ascii=False)
    if any(row.videos for row in rows):
        write_png(os.path.join(root, GRID_NAME), grid_image(rows, prompts))
    print(table(rows, args.metric, best))
    return result
