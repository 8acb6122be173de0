"""Keyed randomness and the sampler's epoch through accelerate's wrappers (what exact resume rests on)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from torch.utils.data import DataLoader, Dataset, Sampler

from hf_easyanimate.config import LegacyFlagConflict
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.reproducibility import (
    SAMPLE_KEYS,
    ReplayableBatchSampler,
    ReplayableCollator,
    ReplayableDataset,
    SampleKey,
    seeded_rngs,
    step_seed,
)


class Draws(Dataset):
    """Each sample draws from all three global generators, like frame sampling, crops and caption drop do."""

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return {"index": index, "py": random.random(), "np": float(np.random.rand()), "torch": torch.rand(1).item()}


def collate(samples):
    return {"index": torch.tensor([s["index"] for s in samples]), "draw": torch.tensor([s["py"] for s in samples]),
            "batch_draw": torch.rand(1)}


class ShuffledBatches(Sampler):
    """A plain batch sampler of indices whose order is a function of (seed, epoch), like the bucket sampler's."""

    def __init__(self, count: int, batch_size: int, seed: int) -> None:
        self.count, self.batch_size, self.seed, self.epoch = count, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.count).tolist()
        return iter([order[i : i + self.batch_size] for i in range(0, self.count, self.batch_size)])

    def __len__(self) -> int:
        return self.count // self.batch_size


def loader(seed=7, batch_size=2):
    sampler = ReplayableBatchSampler(ShuffledBatches(len(Draws()), batch_size=batch_size, seed=seed))
    dataset = ReplayableDataset(Draws(), seed, sampler)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=ReplayableCollator(collate, seed))


def test_sample_draws_depend_on_the_key_only_and_leave_global_state_alone():
    dataset = ReplayableDataset(Draws(), seed=3)
    first = dataset[SampleKey(0, 5)]
    random.random(), np.random.rand(), torch.rand(3)  # whatever else happens in between
    assert dataset[SampleKey(0, 5)] == first
    assert dataset[SampleKey(1, 5)]["py"] != first["py"]  # another epoch, another draw
    assert ReplayableDataset(Draws(), seed=4)[SampleKey(0, 5)]["torch"] != first["torch"]
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    dataset[SampleKey(0, 6)]
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    with seeded_rngs(123):
        inside = torch.rand(1)
    with seeded_rngs(123):
        assert torch.equal(torch.rand(1), inside)
    state = torch.get_rng_state()
    with seeded_rngs(9):
        torch.rand(5)
    assert torch.equal(torch.get_rng_state(), state)


def test_batches_carry_their_keys_and_replay_exactly():
    batches = list(loader())
    again = list(loader())
    assert len(batches) == len(loader().batch_sampler) > 2
    for batch, replay in zip(batches, again):
        assert torch.equal(batch[SAMPLE_KEYS], replay[SAMPLE_KEYS])
        assert torch.equal(batch["draw"], replay["draw"]) and torch.equal(batch["batch_draw"], replay["batch_draw"])
        assert batch[SAMPLE_KEYS][:, 0].tolist() == [0] * len(batch["index"])  # epoch 0
        assert batch[SAMPLE_KEYS][:, 1].tolist() == batch["index"].tolist()
    keys = batches[0][SAMPLE_KEYS].tolist()
    assert step_seed(7, keys) == step_seed(7, [tuple(k) for k in keys]) != step_seed(8, keys)


def test_plans_travel_beside_their_keys():
    """The bucket sampler yields (index, plan) pairs; the wrappers key the index and hand the plan on."""

    class Planned(Sampler):
        def __iter__(self):
            return iter([[(3, "plan-a"), (5, "plan-a")]])

        def __len__(self):
            return 1

    class Echo(Dataset):
        def __getitem__(self, item):
            return {"item": item, "draw": random.random()}

    sampler = ReplayableBatchSampler(Planned())
    (batch,) = list(sampler)
    assert batch == [(SampleKey(0, 3), "plan-a"), (SampleKey(0, 5), "plan-a")]
    dataset = ReplayableDataset(Echo(), seed=1)
    first = dataset[batch[0]]
    assert first["item"] == (3, "plan-a") and first["sample_key"] == (0, 3)
    assert dataset[batch[0]]["draw"] == first["draw"]


@pytest.mark.parametrize("process_index", [0, 1])
def test_resumed_shard_in_a_later_epoch_skips_and_keys_like_the_uninterrupted_one(process_index):
    """Trainer resumes with skip_first_batches(...) then set_epoch(epoch); accelerate's wrappers must pass it on."""
    def shard():
        return prepare_data_loader(loader(), num_processes=2, process_index=process_index, put_on_device=False)

    uninterrupted = shard()
    uninterrupted.set_epoch(1)
    expected = [batch[SAMPLE_KEYS].tolist() for batch in uninterrupted]
    resumed = skip_first_batches(shard(), 1)  # a fresh process: the sampler still says epoch 0
    resumed.set_epoch(1)
    got = [batch[SAMPLE_KEYS].tolist() for batch in resumed]
    assert got == expected[1:] and all(key[0] == 1 for batch in got for key in batch)


def test_mixed_precision_and_its_twins_conflict_by_name(tmp_path):
    base = ["--output_dir", str(tmp_path), "--report_to", "none"]
    with pytest.raises(LegacyFlagConflict, match="--mixed_precision and --bf16"):
        parse_args([*base, "--mixed_precision", "no", "--bf16", "true"])
    with pytest.raises(LegacyFlagConflict, match="--mixed_precision and --bf16"):
        parse_args([*base, "--mixed_precision", "fp16", "--bf16"])
    _, _, args = parse_args([*base, "--mixed_precision", "bf16", "--bf16", "True", "--use_cpu", "true"])
    assert args.bf16 and not args.fp16
    _, _, args = parse_args([*base, "--mixed_precision=no"])
    assert not args.bf16 and not args.fp16
