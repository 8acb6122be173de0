"""``--uniform_sampling``: each simulated rank draws from its own interval; together they cover the range."""

from __future__ import annotations

import pytest
import torch

from hf_easyanimate.objectives import DDPMObjective, DiscreteTimestepSampler, rank_interval, uniform_sampling_groups


def test_four_ranks_draw_disjoint_quarters_that_cover_the_range():
    draws = {}
    for rank in range(4):
        sampler = DiscreteTimestepSampler(num_steps=1000, uniform_sampling=True, rank=rank, world_size=4)
        draws[rank] = sampler(4000, generator=torch.Generator().manual_seed(rank))
    for rank, t in draws.items():
        assert sampler.interval == (750, 1000)  # the last one built
        low, high = 250 * rank, 250 * (rank + 1)
        assert int(t.min()) >= low and int(t.max()) < high, (rank, int(t.min()), int(t.max()))
        assert t.dtype == torch.long
    covered = torch.unique(torch.cat(list(draws.values())))
    assert covered.tolist() == list(range(1000))


def test_every_global_batch_spans_the_range():
    """One step, batch 1 per rank: the 4 ranks' timesteps fall in 4 different quarters."""
    for step in range(20):
        timesteps = [
            DiscreteTimestepSampler(1000, True, rank, 4)(1, generator=torch.Generator().manual_seed(step * 4 + rank))
            for rank in range(4)
        ]
        assert sorted(int(t) // 250 for t in timesteps) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("world_size", "num_steps", "groups"),
    [(1, 1000, 1), (4, 1000, 4), (8, 1000, 8), (3, 1000, 1), (6, 1000, 2), (16, 1000, 8), (12, 1000, 4), (4, 998, 2)],
)
def test_group_count_follows_the_original_search(world_size, num_steps, groups):
    """G = W // i for the smallest i dividing W with G dividing N (e.g. 6 ranks: 2 groups of 3 ranks)."""
    assert uniform_sampling_groups(num_steps, world_size) == groups
    intervals = [rank_interval(num_steps, rank, world_size) for rank in range(world_size)]
    assert len(set(intervals)) == groups
    assert min(low for low, _ in intervals) == 0 and max(high for _, high in intervals) == num_steps
    # Ranks of one group are consecutive.
    assert intervals == sorted(intervals)


def test_without_uniform_sampling_or_one_rank_every_rank_draws_the_full_range():
    for sampler in (DiscreteTimestepSampler(1000, False, 2, 4), DiscreteTimestepSampler(1000, True, 0, 1)):
        assert sampler.interval == (0, 1000)
        t = sampler(5000, generator=torch.Generator().manual_seed(0))
        assert int(t.min()) < 10 and int(t.max()) > 990


def test_ddpm_objective_uses_the_rank_interval():
    from diffusers import DDPMScheduler

    objective = DDPMObjective(DDPMScheduler(), sampler=DiscreteTimestepSampler(1000, True, rank=3, world_size=4))
    t = objective.sample_index(256, generator=torch.Generator().manual_seed(0))
    assert int(t.min()) >= 750 and int(t.max()) < 1000
    with pytest.raises(ValueError, match="outside"):
        rank_interval(1000, 4, 4)
