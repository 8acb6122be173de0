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

from ..data.buckets import frames_on_vae_grid
from ..data.collator import resize_and_center_crop
from ..data.plan import BatchPlan, PlanConfig
from ..data.video import FrameSampling, SampleReadError, read_image, read_video_clip
from ..inpaint import masked_pixels
from ..models.vae import encode_pixels, encode_posterior
from .data import FIRST_FRAME, CachedDataset, CacheSpec, first_frame_mask
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

    def __init__(self, targets: list[LatentTarget], sampling: FrameSampling, temporal_compression: int) -> None:
        self.targets = targets
        self.sampling = sampling
        self.temporal_compression = temporal_compression

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
        count = frames_on_vae_grid(min(target.plan.max_frames, available), self.temporal_compression)
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
def encode_latents(
    vae: torch.nn.Module, reader: PixelReader, writer: ShardWriter, inpaint: bool, workers: int, progress: bool
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
        if inpaint and item["kind"] == "video":
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
    todo = [target for target in targets if target.key not in cache]
    report.latents_present = len(targets) - len(todo)
    vae_home = vae.device
    vae.to(device)
    try:
        reader = PixelReader(todo, dataset.spec.options.frames, config.temporal_compression)
        report.latents_written, report.failed = encode_latents(vae, reader, writer, spec.inpaint, workers, progress)
    finally:
        writer.close()
        vae.to(vae_home)
    cache.refresh()
    report.seconds = time.perf_counter() - started
    return report


