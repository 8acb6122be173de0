"""Discrete timestep sampling, with EasyAnimate's ``--uniform_sampling`` split of the range across ranks.

With W ranks and N training steps, ranks are grouped into G groups, G = W // i for the smallest i >= 1
that divides W and makes G divide N. Group g draws only from [g * N/G, (g + 1) * N/G), so every global
batch covers the whole range instead of whatever the ranks happen to draw. Rank and world size are
plain arguments (no process group needed), which is what makes the split testable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def uniform_sampling_groups(num_steps: int, world_size: int) -> int:
    """Number of rank groups G for ``--uniform_sampling`` (1 when no useful split exists)."""
    if world_size < 1 or num_steps < 1:
        raise ValueError(f"need world_size >= 1 and num_steps >= 1, got {world_size}, {num_steps}")
    for ranks_per_group in range(1, world_size + 1):
        groups = world_size // ranks_per_group
        if world_size % ranks_per_group == 0 and num_steps % groups == 0:
            return groups
    return 1  # unreachable: ranks_per_group == world_size gives groups == 1


def rank_interval(num_steps: int, rank: int, world_size: int) -> tuple[int, int]:
    """The [low, high) slice of [0, num_steps) that ``rank`` draws from under ``--uniform_sampling``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    groups = uniform_sampling_groups(num_steps, world_size)
    ranks_per_group = world_size // groups
    width = num_steps // groups
    group = rank // ranks_per_group
    return group * width, (group + 1) * width


@dataclass(frozen=True)
class DiscreteTimestepSampler:
    """Uniform integer indices in [0, num_steps), or in this rank's interval with ``uniform_sampling``."""

    num_steps: int = 1000
    uniform_sampling: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def interval(self) -> tuple[int, int]:
        if self.uniform_sampling and self.world_size > 1:
            return rank_interval(self.num_steps, self.rank, self.world_size)
        return 0, self.num_steps

    def __call__(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        low, high = self.interval
        return torch.randint(low, high, (batch_size,), generator=generator, device=device, dtype=torch.long)
