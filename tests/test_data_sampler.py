"""BucketBatchSampler: single-bucket batches, (seed, epoch) replay, ranks disjoint, accelerate integration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datatools import synthetic_rows, write_metadata

from hf_easyanimate.data import BucketBatchSampler, PlanConfig, SampleIndex, load_metadata, unshard_batch_sampler
from hf_easyanimate.data.sampler import EmptyEpochError, epoch_batches


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> SampleIndex:
    meta = load_metadata(write_metadata(str(tmp_path_factory.mktemp("meta") / "m.jsonl"), synthetic_rows(1000)))
    return SampleIndex.build(meta, meta.usable, video_repeat=1, enable_bucket=True)


CONFIG = PlanConfig(image_sample_size=1024, video_sample_size=256, token_sample_size=512, video_sample_n_frames=49,
                    enable_bucket=True, random_hw_adapt=True, training_with_video_token_length=True)


def batches_of(sampler) -> list[list[int]]:
    return [[i for i, _ in batch] for batch in sampler]


def test_batches_are_single_bucket_with_one_plan(index):
    sampler = BucketBatchSampler(index, 4, CONFIG, seed=3)
    for batch in sampler:
        plans = {id(plan) for _, plan in batch}
        assert len(batch) == 4 and len(plans) == 1
        plan = batch[0][1]
        assert {int(index.buckets[i]) for i, _ in batch} == {plan.bucket}
        assert plan.kind == index.bucket_keys[plan.bucket][0]


def test_epoch_covers_every_index_once_except_incomplete_buckets(index):
    sampler = BucketBatchSampler(index, 4, CONFIG, seed=3)
    seen = np.concatenate(batches_of(sampler))
    assert len(seen) == len(set(seen.tolist())) == len(sampler) * 4
    left_out = np.setdiff1d(np.arange(len(index)), seen)
    # Only leftovers of incomplete buckets: fewer than a batch per bucket.
    per_bucket = np.bincount(index.buckets[left_out], minlength=len(index.bucket_keys))
    assert (per_bucket < 4).all()
    assert (per_bucket == index.bucket_counts() % 4).all()


def test_order_is_a_function_of_seed_and_epoch(index):
    first = BucketBatchSampler(index, 4, CONFIG, seed=3)
    second = BucketBatchSampler(index, 4, CONFIG, seed=3)
    assert batches_of(first) == batches_of(second)
    plans = [b[0][1] for b in first]
    assert plans == [b[0][1] for b in second]  # sizes, frames and per-sample seeds replay too
    first.set_epoch(1)
    assert batches_of(first) != batches_of(second)
    second.set_epoch(1)
    assert batches_of(first) == batches_of(second)
    assert batches_of(BucketBatchSampler(index, 4, CONFIG, seed=4)) != batches_of(second)


def test_emission_order_matches_a_streaming_bucketer():
    """Batches come out in the order buckets fill while walking the shuffled indices (the original's rule)."""
    rng = np.random.default_rng(0)
    buckets = rng.integers(0, 5, 200).astype(np.int32)
    batches = epoch_batches(buckets, 3, seed=11, epoch=2)
    order = np.random.default_rng([11, 2]).permutation(len(buckets))
    pending: dict[int, list[int]] = {}
    streamed = []
    for index in order:
        pending.setdefault(int(buckets[index]), []).append(int(index))
        if len(pending[int(buckets[index])]) == 3:
            streamed.append(pending.pop(int(buckets[index])))
    assert [batch.tolist() for batch in batches] == streamed
    # Evaluation keeps the incomplete remainders too: every index exactly once.
    everything = epoch_batches(buckets, 3, seed=11, epoch=2, drop_last=False)
    assert [batch.tolist() for batch in everything[: len(streamed)]] == streamed
    assert sorted(np.concatenate(everything).tolist()) == list(range(200))
    assert all(len({int(buckets[i]) for i in batch}) == 1 for batch in everything)


def test_ranks_are_disjoint_equal_length_and_cover_the_epoch(index):
    world = 3
    samplers = [BucketBatchSampler(index, 4, CONFIG, seed=5, num_replicas=world, rank=r) for r in range(world)]
    per_rank = [batches_of(s) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert len(flat) == len(set(flat))
    single = BucketBatchSampler(index, 4, CONFIG, seed=5)
    global_batches = single.global_batches()
    used = global_batches[: len(samplers[0].global_batches())]
    assert sorted(flat) == sorted(np.concatenate(used).tolist())
    assert samplers[0].batches_per_epoch % world == 0
    assert single.batches_per_epoch - samplers[0].batches_per_epoch < world


def test_shared_token_length_draws_the_same_numbers_on_every_rank(index):
    config = PlanConfig(**{**CONFIG.__dict__, "keep_all_node_same_token_length": True, "random_frame_crop": True})
    plans = [[batch[0][1] for batch in BucketBatchSampler(index, 4, config, seed=5, num_replicas=2, rank=r)]
             for r in range(2)]
    same_step = [(a, b) for a, b in zip(*plans) if a.kind == b.kind == "video"]
    assert same_step
    assert all(a.frame_crop == b.frame_crop for a, b in same_step)
    budgets_equal = [a.token_frames == b.token_frames for a, b in same_step if (a.height, a.width) == (b.height, b.width)]
    assert budgets_equal and all(budgets_equal)
    independent = [[batch[0][1] for batch in BucketBatchSampler(index, 4, CONFIG, seed=5, num_replicas=2, rank=r)]
                   for r in range(2)]
    assert any(a.side != b.side for a, b in zip(*independent) if a.kind == b.kind == "video")


def test_too_little_data_fails_clearly(index):
    with pytest.raises(EmptyEpochError, match="lower --train_batch_size"):
        BucketBatchSampler(index, 10_000, CONFIG)


class _Dataset(torch.utils.data.Dataset):
    def __len__(self):
        return 10**6

    def __getitem__(self, item):
        return item[0]


def _collate(indices):
    return torch.tensor(indices)


def test_accelerate_prepare_keeps_rank_batches_and_resume_replays_them(index):
    """prepare_data_loader on rank 1 of 2 wraps the sampler in BatchSamplerShard; unshard makes it a pass-through,
    and after skip_first_batches (resume mid-epoch) set_epoch still reaches the sampler."""
    from accelerate.data_loader import prepare_data_loader, skip_first_batches

    sampler = BucketBatchSampler(index, 4, CONFIG, seed=9, num_replicas=2, rank=1)
    loader = torch.utils.data.DataLoader(_Dataset(), batch_sampler=sampler, collate_fn=_collate)
    prepared = prepare_data_loader(loader, num_processes=2, process_index=1, put_on_device=False)
    naive = [b.tolist() for b in prepared]
    assert len(naive) < len(sampler)  # accelerate alone would shard the already-sharded batches again
    unshard_batch_sampler(prepared, sampler)
    prepared.set_epoch(2)
    reference = BucketBatchSampler(index, 4, CONFIG, seed=9, num_replicas=2, rank=1)
    reference.set_epoch(2)
    expected = batches_of(reference)
    assert [b.tolist() for b in prepared] == expected
    # A resumed run: fresh sampler (epoch 0), Trainer skips the trained batches, then sets the epoch.
    resumed_sampler = BucketBatchSampler(index, 4, CONFIG, seed=9, num_replicas=2, rank=1)
    resumed = unshard_batch_sampler(
        prepare_data_loader(torch.utils.data.DataLoader(_Dataset(), batch_sampler=resumed_sampler, collate_fn=_collate),
                            num_processes=2, process_index=1, put_on_device=False),
        resumed_sampler,
    )
    skipped = skip_first_batches(resumed, 5)
    skipped.set_epoch(2)
    skipped.batch_sampler.batch_sampler.set_epoch(2)  # Trainer._run_epoch: set_epoch on the wrapped sampler
    assert [b.tolist() for b in skipped] == expected[5:]
