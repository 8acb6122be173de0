"""``BucketBatchSampler``: single-bucket batches, disjoint across ranks, replayable from (seed, epoch).

Each epoch: shuffle every index with an RNG seeded by (seed, epoch); walk the shuffled order dropping
each index into its bucket; a bucket that fills becomes a batch (the original's streaming rule, done with
numpy). Incomplete buckets are dropped at the end of the epoch (the original carries them over to the next
epoch in memory, which a resumed run cannot replay). The batch list is cut to a multiple of the number of
processes and rank ``r`` takes batches ``r, r + W, r + 2W, ...``: ranks are disjoint, every rank runs the
same number of steps, and together they cover the epoch.

The sampler is rank-aware, so ``accelerate`` must not shard it again: :func:`unshard_batch_sampler` turns
the ``BatchSamplerShard`` that ``accelerator.prepare`` wraps around it into a pass-through, the way
``transformers.Trainer`` treats its own rank-aware batch samplers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from .index import SampleIndex
from .plan import BatchPlan, PlanConfig, plan_batch

logger = logging.getLogger(__name__)

_PLAN_STREAM, _SHARED_PLAN_STREAM = 0, 1


class EmptyEpochError(ValueError):
    """No full batch can be formed; the message says how many samples and buckets there are."""


REMAINDER_MODES = ("drop", "fill")
_FILL_STREAM = 2


def epoch_batches(
    buckets: np.ndarray, batch_size: int, seed: int, epoch: int, drop_last: bool = True, remainder: str = "drop"
) -> list[np.ndarray]:
    """The epoch's single-bucket batches (arrays of indices) in emission order.

    Emission order is the order in which buckets fill while walking the shuffled indices, exactly as a
    streaming bucketer would emit them. With ``drop_last=False`` each bucket's incomplete remainder follows
    as one smaller batch (evaluation keeps every clip). ``remainder="fill"`` (``--bucket_remainder fill``) tops
    each remainder up to a full batch with other samples of the same bucket (repeats when the bucket is smaller
    than a batch), drawn from (seed, epoch), so every sample is trained every epoch.
    """
    count = len(buckets)
    if count == 0:
        return []
    order = np.random.default_rng([seed, epoch]).permutation(count)
    shuffled_buckets = buckets[order]
    by_bucket = np.argsort(shuffled_buckets, kind="stable")  # positions in `order`, grouped by bucket
    grouped = shuffled_buckets[by_bucket]
    starts = np.searchsorted(grouped, grouped, side="left")
    rank_in_bucket = np.arange(count) - starts
    sizes = np.bincount(grouped)
    full = rank_in_bucket < (sizes[grouped] // batch_size) * batch_size
    positions = by_bucket[full].reshape(-1, batch_size)  # each row: one batch, members in arrival order
    completed_at = positions[:, -1]
    batches = list(order[positions[np.argsort(completed_at, kind="stable")]])
    if not drop_last or remainder == "fill":
        rest = by_bucket[~full]
        rng = np.random.default_rng([seed, epoch, _FILL_STREAM])
        for bucket in np.unique(grouped[~full]):
            left = order[rest[grouped[~full] == bucket]]
            if remainder == "fill" and drop_last:
                members = order[by_bucket[grouped == bucket]]
                others = np.setdiff1d(members, left)
                need = batch_size - len(left)
                pool = others if len(others) >= need else members  # repeats only when the bucket is too small
                left = np.concatenate([left, rng.choice(pool, size=need, replace=len(pool) < need)])
            batches.append(left)
    return batches


def batches_per_epoch(counts: np.ndarray, batch_size: int, remainder: str = "drop") -> int:
    """Batches an epoch forms from bucket sizes ``counts``: full ones only ("drop"), or one more per bucket with a
    remainder ("fill" tops it up, "keep" leaves it smaller)."""
    counts = np.asarray(counts)
    if remainder == "drop":
        return int((counts // batch_size).sum())
    return int(np.ceil(counts / batch_size).sum())


class BucketBatchSampler(Sampler[list[tuple[int, BatchPlan]]]):
    """Yields, for this rank, lists of ``(index, plan)``: ``batch_size`` indices of one bucket and their plan.

    Args:
        index: the training index (buckets and sizes).
        batch_size: samples per batch on this rank (``per_device_train_batch_size``).
        config: the flags that decide per-batch sizes (:class:`PlanConfig`).
        seed: the run seed; the batch order and every per-batch draw are functions of (seed, epoch, batch).
        num_replicas, rank: the data-parallel world; default single process.
        drop_last: False keeps each bucket's incomplete remainder as a smaller batch (evaluation); then the
            sampler is not rank-aware and accelerate shards it as usual.
        remainder: "drop" (the original: incomplete buckets wait for the next epoch) or "fill" (topped up to a
            full batch from the same bucket; ``--bucket_remainder``).
    """

    drop_last = True  # read by accelerate's BatchSamplerShard: every training batch is full

    def __init__(
        self,
        index: SampleIndex,
        batch_size: int,
        config: PlanConfig,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
        remainder: str = "drop",
    ) -> None:
        if remainder not in REMAINDER_MODES:
            raise ValueError(f"remainder must be one of {REMAINDER_MODES}, got {remainder!r}")
        if not drop_last and num_replicas != 1:
            raise ValueError("drop_last=False (evaluation) is planned for one process; accelerate shards it")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside a world of {num_replicas} process(es)")
        self.index = index
        self.batch_size = batch_size
        self.config = config
        self.seed = int(seed) & 0xFFFFFFFF
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.remainder = remainder
        self.epoch = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None
        full = batches_per_epoch(index.bucket_counts(), batch_size, remainder if drop_last else "keep")
        if full < num_replicas:
            counts = ", ".join(f"{kind}/{ratio}: {n}" for (kind, ratio), n in zip(index.bucket_keys, index.bucket_counts()))
            raise EmptyEpochError(
                f"{len(index)} usable sample(s) in {len(index.bucket_keys)} bucket(s) ({counts or 'none'}) make "
                f"{full} full batch(es) of {batch_size}, fewer than the {num_replicas} process(es); "
                "lower --train_batch_size, pass --bucket_remainder fill, or add data"
            )
        self.batches_per_epoch = full - full % num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Called by Trainer before each epoch (directly or through accelerate's wrappers)."""
        self.epoch = int(epoch)

    def global_batches(self, epoch: int | None = None) -> list[np.ndarray]:
        """All ranks' batches of ``epoch``; rank r's are r, r + W, ..."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            batches = epoch_batches(
                self.index.buckets, self.batch_size, self.seed, epoch, self.drop_last, self.remainder
            )
            self._cache = (epoch, batches[: self.batches_per_epoch])
        return self._cache[1]

    def plan(self, epoch: int, batch: int, members: np.ndarray) -> BatchPlan:
        """The plan of global batch ``batch``; with --keep_all_node_same_token_length drawn per step, so every
        rank draws the same numbers."""
        step = batch // self.num_replicas
        if self.config.keep_all_node_same_token_length:
            stream = [self.seed, epoch, _SHARED_PLAN_STREAM, step]
        else:
            stream = [self.seed, epoch, _PLAN_STREAM, batch]
        bucket = int(self.index.buckets[members[0]])
        kind, ratio_key = self.index.bucket_keys[bucket]
        sizes = np.stack([self.index.heights[members], self.index.widths[members]], axis=1)
        return plan_batch(
            self.config, kind, ratio_key, sizes, np.random.default_rng(stream), bucket=bucket,
            entropy=(self.seed, epoch, batch),
        )

    def __iter__(self) -> Iterator[list[tuple[int, BatchPlan]]]:
        epoch = self.epoch
        batches = self.global_batches(epoch)
        for batch in range(self.rank, len(batches), self.num_replicas):
            members = batches[batch]
            plan = self.plan(epoch, batch, members)
            yield [(int(index), plan) for index in members]

    def __len__(self) -> int:
        return self.batches_per_epoch // self.num_replicas


def unshard_batch_sampler(dataloader, sampler: BucketBatchSampler):
    """Make ``accelerator.prepare``'s ``BatchSamplerShard`` around ``sampler`` a pass-through.

    ``sampler`` already yields only this rank's batches; sharding again would hand each rank 1/W of them.
    The wrapper also lacks ``set_epoch``, so after ``skip_first_batches`` (resume mid-epoch) Trainer could
    not reach the sampler; forwarding it keeps the resumed epoch's order right.
    """
    shard = getattr(dataloader, "batch_sampler", None)
    inner = getattr(shard, "batch_sampler", None)
    # ``inner`` is the sampler itself or a thin wrapper around it (reproducibility.ReplayableBatchSampler).
    if shard is not None and shard is not sampler and sampler in (inner, getattr(inner, "inner", None)):
        shard.num_processes = 1
        shard.process_index = 0
        shard.set_epoch = inner.set_epoch
    return dataloader
