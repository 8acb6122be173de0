"""``hf-easyanimate precompute RECIPE.yaml --latent_cache_dir C``: encode every sample once, resumably.

What training will ask for is fixed by the recipe (random size/crop/flip flags are refused with the cache):
each clip at its bucket's size with a fixed frame window, and each caption (plus "" for the caption drop).
Entries already in ``C`` are skipped, so a killed run continues where it stopped; under torchrun rank ``r``
encodes entries ``r, r + W, ...``. Decoding runs in ``--dataloader_num_workers`` processes beside the encoder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.buckets import FrameGrid, frames_on_vae_grid
from ..data.collator import resize_and_center_crop
from ..data.plan import BatchPlan, PlanConfig
from ..data.video import FrameSampling, SampleReadError, read_image, read_video_clip
from ..models.inpaint import masked_pixels
from ..models.vae import encode_pixels, encode_posterior
from .data import (
    FIRST_FRAME,
    INPAINT_FIRST,
    INPAINT_FULL,
    REFERENCE_FEATURES,
    VIDEO,
    CachedDataset,
    CacheSpec,
    first_frame_mask,
)
from .store import LatentCache, ShardWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentTarget:
    """One entry to encode: a file cut to a plan's size and frame budget."""

    key: str
    path: str
    kind: str
    plan: BatchPlan


@dataclass
class PrecomputeReport:
    latents_written: int = 0
    latents_present: int = 0
    prompts_written: int = 0
    prompts_present: int = 0
    failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"latents: {self.latents_written} encoded, {self.latents_present} already cached; prompts: "
                f"{self.prompts_written} encoded, {self.prompts_present} already cached; {self.failed} unreadable "
                f"file(s); {self.seconds:.1f}s")


def latent_targets(dataset: CachedDataset, config: PlanConfig) -> list[LatentTarget]:
    """Every distinct entry the training index needs (a repeated video is one entry)."""
    targets: dict[str, LatentTarget] = {}
    for i, key, plan in dataset.planned_entries(config):
        path = dataset.metadata.path(int(dataset.index.rows[i]))
        targets.setdefault(key, LatentTarget(key, path, dataset.kind(i), plan))
    return list(targets.values())


class PixelReader(Dataset):
    """Targets -> the pixels the training collator would build for them (runs in dataloader workers)."""

    def __init__(self, targets: list[LatentTarget], sampling: FrameSampling, frame_grid: FrameGrid) -> None:
        self.targets = targets
        self.sampling = sampling
        self.frame_grid = frame_grid

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict:
        target = self.targets[i]
        try:
            if target.kind == "video":
                # A fixed window draws nothing from the generator.
                frames, available = read_video_clip(
                    target.path, self.sampling, np.random.default_rng(0), limit=target.plan.decode_limit
                )
            else:
                frames, available = read_image(target.path), 1
        except SampleReadError as error:
            return {"key": target.key, "error": str(error)}
        count = frames_on_vae_grid(min(target.plan.max_frames, available), self.frame_grid)
        frames = torch.from_numpy(np.require(frames[:count], requirements=("C_CONTIGUOUS", "WRITEABLE")))
        pixels = resize_and_center_crop(frames, target.plan.height, target.plan.width)
        return {"key": target.key, "pixels": pixels, "available": int(available), "kind": target.kind}


@torch.no_grad()
def encode_prompts(
    prompt_encoder, texts: list[str], spec: CacheSpec, writer: ShardWriter, device: torch.device, batch_size: int = 8
) -> None:
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        encoded = prompt_encoder(chunk, device=device)
        for i, text in enumerate(chunk):
            writer.add(spec.prompt_key(text), {name: value[i] for name, value in encoded.items()}, kind="prompt")


@torch.no_grad()
def encoded_mask_tensors(vae: torch.nn.Module, pixels: torch.Tensor, kind: str, image_encoder=None) -> dict:
    """V2-V4 inpaint conditioning of one clip (1, F, 3, H, W): the unscaled posterior of
    ``cat([VAE(mask as 3 channels), VAE(masked video)])`` for "everything masked" (and, for videos, "frame 0
    shown"), as :class:`~hf_easyanimate.inpaint.EncodedMaskInpaintConditioner` builds it, plus the CLIP features
    of frame 0 when the model has an image encoder."""
    frames, height, width = pixels.shape[1], pixels.shape[3], pixels.shape[4]
    masks = {INPAINT_FULL: torch.ones((1, frames, 1, height, width))}
    if kind == VIDEO:
        masks[INPAINT_FIRST] = first_frame_mask(frames, height, width)[None].float()
    tensors = {}
    for name, mask in masks.items():
        mask_mean, mask_std = encode_posterior(vae, mask.repeat(1, 1, 3, 1, 1), 1)
        video_mean, video_std = encode_posterior(vae, masked_pixels(pixels.float(), mask), 1)
        tensors[f"{name}_mean"] = torch.cat([mask_mean, video_mean], dim=1)[0]
        tensors[f"{name}_std"] = torch.cat([mask_std, video_std], dim=1)[0]
    if image_encoder is not None:
        frame = (pixels[0, 0].permute(1, 2, 0).float() * 0.5 + 0.5) * 255  # as the collator's reference_frame
        tensors[REFERENCE_FEATURES] = image_encoder(frame[None], device=vae.device)[0].float()
    return tensors


@torch.no_grad()
def encode_latents(
    vae: torch.nn.Module, reader: PixelReader, writer: ShardWriter, spec: CacheSpec, workers: int, progress: bool,
    image_encoder=None,
) -> tuple[int, int]:
    """Encode every target of ``reader``; returns (written, unreadable)."""
    loader = DataLoader(reader, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    written = failed = 0
    for item in tqdm(loader, total=len(reader), desc="latents", disable=not progress, unit="clip"):
        if "error" in item:
            logger.warning("precompute: skipping unreadable sample: %s", item["error"])
            failed += 1
            continue
        pixels = item["pixels"][None]
        mean, std = encode_posterior(vae, pixels, 1)
        tensors = {"mean": mean[0], "std": std[0]}
        if spec.inpaint and spec.encoded_mask:
            tensors.update(encoded_mask_tensors(vae, pixels, item["kind"], image_encoder))
        elif spec.inpaint and item["kind"] == "video":
            reference = masked_pixels(pixels, first_frame_mask(*pixels.shape[1:2], *pixels.shape[3:])[None])
            tensors[FIRST_FRAME] = encode_pixels(vae, reference, 1, sample=False)[0]
        writer.add(item["key"], tensors, available=item["available"], frames=int(pixels.shape[1]), kind=item["kind"])
        written += 1
    return written, failed


def precompute(
    dataset: CachedDataset,
    config: PlanConfig,
    vae: torch.nn.Module,
    prompt_encoder,
    device: torch.device | str,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    entries_per_shard: int = 64,
    image_encoder=None,
) -> PrecomputeReport:
    """Encode this rank's share of the missing entries of ``dataset`` into its cache folder."""
    started = time.perf_counter()
    device = torch.device(device)
    cache: LatentCache = dataset.cache
    spec = dataset.spec
    report = PrecomputeReport()
    writer = ShardWriter(cache.directory, prefix=f"rank{rank:03d}", entries_per_shard=entries_per_shard)
    texts = sorted(dataset.needed_texts())[rank::world_size]
    todo_texts = [text for text in texts if spec.prompt_key(text) not in cache]
    report.prompts_present = len(texts) - len(todo_texts)
    homes = [module.device for module in prompt_encoder.text_encoders]
    try:
        for module in prompt_encoder.text_encoders:
            module.to(device)
        encode_prompts(prompt_encoder, todo_texts, spec, writer, device)
    finally:
        for module, home in zip(prompt_encoder.text_encoders, homes):
            module.to(home)
    writer.flush()
    report.prompts_written = len(todo_texts)
    targets = latent_targets(dataset, config)[rank::world_size]
    # An entry written by a run that needed less (a normal-mode precompute before an inpaint one) is encoded again
    # with everything; the cache then reads the fuller entry.
    todo = [target for target in targets if not spec.holds(cache, target.key, target.kind)]
    report.latents_present = len(targets) - len(todo)
    image_modules = list(getattr(image_encoder, "modules", []))
    homes = [vae.device] + [next(module.parameters()).device for module in image_modules]
    for module in [vae, *image_modules]:
        module.to(device)
    try:
        reader = PixelReader(todo, dataset.spec.options.frames, config.frame_grid)
        report.latents_written, report.failed = encode_latents(
            vae, reader, writer, spec, workers, progress, image_encoder=image_encoder
        )
    finally:
        writer.close()
        for module, home in zip([vae, *image_modules], homes):
            module.to(home)
    cache.refresh()
    report.seconds = time.perf_counter() - started
    return report


