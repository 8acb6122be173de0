"""Training from the latent cache: a dataset that yields cached tensors instead of pixels, and its collator.

The per-sample draws are those of :class:`~hf_easyanimate.data.EasyAnimateDataset` with a fixed frame window
(the caption drop, keyed by the same (seed, epoch, batch, index)); the collator cuts latents to the batch's
frame count exactly as the pixel collator cuts frames. So with augmentation off a cached run sees the batches,
captions and frame counts of an uncached one, and the trainer draws the latent sample from the cached
posterior with the step's keyed RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.collator import EasyAnimateCollator, tile_batch
from ..data.dataset import SampleOptions
from ..data.index import SampleIndex
from ..data.metadata import KIND_NAMES, KIND_VIDEO, MetadataTable
from ..data.plan import BatchPlan, PlanConfig, plan_batch
from ..data.problems import BATCH_KEY
from .batch import (
    INPAINT_MEAN,
    INPAINT_STD,
    LATENT_MEAN,
    LATENT_STD,
    MASKED_VIDEO_LATENTS,
    PROMPT_KEYS,
    REFERENCE_FEATURES,
    LatentBatch,
)
from .keys import latent_key, prompt_key
from .store import LatentCache

FIRST_FRAME = "first_frame"  # masked-video latents with only frame 0 shown (inpaint, posterior mode, scaled)
# V2-V4 inpaint (the mask goes through the VAE too): the unscaled posterior (name_mean, name_std) of
# cat([VAE(mask), VAE(masked video)]) for the two cached masks; the batch carries the chosen one (batch.py).
INPAINT_FIRST, INPAINT_FULL = "inpaint_first", "inpaint_full"
VIDEO = KIND_NAMES[KIND_VIDEO]


class CacheMissError(ValueError):
    """Training samples without a cache entry; the message says how many and what to run."""


def fixed_plan(config: PlanConfig, index: SampleIndex, i: int) -> BatchPlan:
    """The size and frame budget of index ``i``: fixed when every random size/crop flag is off."""
    bucket = int(index.buckets[i])
    kind, ratio_key = index.bucket_keys[bucket]
    sizes = np.array([[index.heights[i], index.widths[i]]])
    return plan_batch(config, kind, ratio_key, sizes, np.random.default_rng(0), bucket=bucket)


@dataclass(frozen=True)
class CacheSpec:
    """What identifies this run's entries: the frame sampling and the encoders' fingerprints."""

    options: SampleOptions
    vae: str
    text: str
    inpaint: bool = False  # entries must hold the inpaint conditioning too
    encoded_mask: bool = False  # V2-V4: posteriors of the VAE-encoded masks instead of FIRST_FRAME
    reference_features: bool = False  # V3/V4 InP: CLIP features of frame 0

    def required_tensors(self, kind: str) -> set[str]:
        """The tensor names an entry of ``kind`` ("video" / "image") must hold for this run."""
        names = {"mean", "std"}
        if not self.inpaint:
            return names
        if not self.encoded_mask:
            return names | ({FIRST_FRAME} if kind == VIDEO else set())
        variants = (INPAINT_FIRST, INPAINT_FULL) if kind == VIDEO else (INPAINT_FULL,)
        names |= {f"{variant}_{part}" for variant in variants for part in ("mean", "std")}
        return names | ({REFERENCE_FEATURES} if self.reference_features else set())

    def holds(self, cache: LatentCache, key: str, kind: str) -> bool:
        """Whether ``cache`` has ``key`` with every tensor this run reads from it."""
        return key in cache and self.required_tensors(kind) <= set(cache.info(key)["tensors"])

    def latent_key(self, path: str, kind: str, plan: BatchPlan) -> str:
        return latent_key(path, kind, plan.height, plan.width, self.options.frames, plan.decode_limit, self.vae)

    def prompt_key(self, text: str) -> str:
        return prompt_key(text, self.text)


class CachedDataset(Dataset):
    """``dataset[(i, plan)]`` -> cached posterior, prompt embedding and the sample's bookkeeping."""

    def __init__(
        self, metadata: MetadataTable, index: SampleIndex, cache: LatentCache, spec: CacheSpec, seed: int = 0
    ) -> None:
        self.metadata = metadata
        self.index = index
        self.cache = cache
        self.spec = spec
        self.seed = int(seed) & 0xFFFFFFFF
        self.problems = None  # no read failures: missing entries fail before training

    def __len__(self) -> int:
        return len(self.index)

    def kind(self, index: int) -> str:
        return self.index.kind_name(index)

    def _key(self, index: int, plan: BatchPlan) -> str:
        row = int(self.index.rows[index])
        return self.spec.latent_key(self.metadata.path(row), self.kind(index), plan)

    def __getitem__(self, item) -> dict:
        if not isinstance(item, tuple):
            raise TypeError("CachedDataset is indexed by (index, plan) pairs, as BucketBatchSampler yields them: "
                            "an entry's key depends on the batch's size")
        index, plan = int(item[0]), item[1]
        row = int(self.index.rows[index])
        entropy = plan.entropy if plan.entropy else (self.seed, index)
        rng = np.random.default_rng([*entropy, index])  # the pixel dataset's per-sample stream
        text = self.metadata.text(row)
        if rng.random() < self.spec.options.text_drop_ratio:
            text = ""
        key = self._key(index, plan)
        tensors = self.cache.load(key)
        return {
            "latents": tensors,
            "prompt": self.cache.load(self.spec.prompt_key(text)),
            "text": text,
            "type": self.kind(index),
            "index": index,
            "row": row,
            "available_frames": int(self.cache.info(key)["available"]),
            "plan": plan,
            "problems": [],
        }

    def planned_entries(self, config: PlanConfig) -> Iterator[tuple[int, str, BatchPlan]]:
        """(index, entry key, plan) for every index: the entries training reads (precompute writes them)."""
        for i in range(len(self.index)):
            plan = fixed_plan(config, self.index, i)
            yield i, self._key(i, plan), plan

    def needed_texts(self) -> set[str]:
        """Every caption training can ask for: each row's text, plus "" when captions are dropped."""
        texts = {self.metadata.text(int(row)) for row in np.unique(self.index.rows)}
        if self.spec.options.text_drop_ratio > 0:
            texts.add("")
        return texts

    def missing(self, config: PlanConfig) -> list[str]:
        """Metadata files (and captions) of this index that have no entry: empty when training can start."""
        missing = []
        for i, key, _ in self.planned_entries(config):
            if not self.spec.holds(self.cache, key, self.kind(i)):
                missing.append(self.metadata.path(int(self.index.rows[i])))
        missing += [f"caption {text!r}" for text in sorted(self.needed_texts())
                    if self.spec.prompt_key(text) not in self.cache]
        return sorted(set(missing))


def check_complete(dataset: CachedDataset, config: PlanConfig, recipe_hint: str = "RECIPE.yaml") -> None:
    """Fail before step 1 when any training sample lacks its entry, saying how many and how to fill them."""
    missing = dataset.missing(config)
    if missing:
        shown = "\n".join(f"  {item}" for item in missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise CacheMissError(
            f"{len(missing)} training sample(s) or caption(s) have no entry in the latent cache "
            f"{dataset.cache.directory} for these settings (sizes, frames, model):\n{shown}{more}\n"
            f"Run `hf-easyanimate precompute {recipe_hint} --latent_cache_dir {dataset.cache.directory}` first "
            "(it encodes only what is missing)."
        )


@dataclass
class CachedInpaintMasks:
    """Inpaint masks whose masked-video latents the cache holds: first frame shown (image-to-video) or
    everything masked (text-to-video), half and half for videos; images are always fully masked.

    The other kinds of :mod:`hf_easyanimate.data.masks` need a VAE pass over each new mask, which is what
    the cache removes; docs/cache.md says so.
    """

    first_frame_probability: float = 0.5

    def __call__(self, num_frames: int, height: int, width: int) -> torch.Tensor:
        if num_frames > 1 and float(torch.rand(())) < self.first_frame_probability:
            return first_frame_mask(num_frames, height, width)
        return torch.ones((num_frames, 1, height, width), dtype=torch.uint8)


def first_frame_mask(num_frames: int, height: int, width: int) -> torch.Tensor:
    """(F, 1, H, W) mask showing frame 0 only: the variant precompute encodes."""
    mask = torch.ones((num_frames, 1, height, width), dtype=torch.uint8)
    mask[0] = 0
    return mask


@dataclass
class CachedCollator:
    """Stacks cached posteriors and prompt embeddings, cut to the batch's frame count like pixels are."""

    config: PlanConfig = field(default_factory=PlanConfig)
    mask_generator: Callable[[int, int, int], torch.Tensor] | None = None
    encoded_masks: bool = False  # V2-V4 inpaint: pick INPAINT_FIRST / INPAINT_FULL posteriors (CacheSpec.encoded_mask)
    _pixels: EasyAnimateCollator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pixels = EasyAnimateCollator(self.config)  # its frame arithmetic, so both cut batches alike

    def __call__(self, samples: list[dict]) -> LatentBatch:
        plan = samples[0]["plan"]
        frames, tile = self._pixels.frames_and_tile(plan, [s["available_frames"] for s in samples])
        keep = self.config.frame_grid.latent_frames(frames)
        batch = LatentBatch({
            LATENT_MEAN: torch.stack([s["latents"]["mean"][:, :keep] for s in samples]),
            LATENT_STD: torch.stack([s["latents"]["std"][:, :keep] for s in samples]),
            "text": [s["text"] for s in samples],
            "data_type": plan.kind,
            "sample_index": [int(s["index"]) for s in samples],
            BATCH_KEY: [],
        })
        for name in PROMPT_KEYS:
            if name in samples[0]["prompt"]:
                batch[name] = torch.stack([s["prompt"][name] for s in samples])
        if self.mask_generator is not None:
            masks = torch.stack([self.mask_generator(frames, plan.height, plan.width) for _ in samples])
            batch["mask"] = masks
            if self.encoded_masks:
                self._add_encoded_masks(batch, samples, masks, keep)
            else:
                batch[MASKED_VIDEO_LATENTS] = torch.stack([
                    s["latents"][FIRST_FRAME][:, :keep] if FIRST_FRAME in s["latents"] and not bool(m.min())
                    else torch.zeros_like(s["latents"]["mean"][:, :keep])
                    for s, m in zip(samples, masks)
                ])
        return tile_batch(batch, tile)

    @staticmethod
    def _add_encoded_masks(batch: dict, samples: list[dict], masks: torch.Tensor, keep: int) -> None:
        """V2-V4: each sample's cached conditioning posterior for its mask, and its frame-0 CLIP features."""
        variants = [INPAINT_FULL if bool(m.min()) else INPAINT_FIRST for m in masks]
        for batch_key, part in ((INPAINT_MEAN, "mean"), (INPAINT_STD, "std")):
            batch[batch_key] = torch.stack([s["latents"][f"{v}_{part}"][:, :keep] for s, v in zip(samples, variants)])
        if REFERENCE_FEATURES in samples[0]["latents"]:
            batch[REFERENCE_FEATURES] = torch.stack([s["latents"][REFERENCE_FEATURES] for s in samples])
