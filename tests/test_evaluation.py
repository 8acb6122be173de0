"""Building blocks of the deterministic eval loss: the timestep grid, pinned timesteps, encode-once, RNG care."""

from __future__ import annotations

import random

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from hf_easyanimate.objectives import FlowMatchingObjective
from hf_easyanimate.objectives.base import grid_indices
from hf_easyanimate.training.evaluation import EncodeOnce, pinned_index, preserved_rng_state, seeded


def test_grid_is_the_centres_of_equal_bins():
    assert grid_indices(4, 1000).tolist() == [125, 375, 625, 875]
    assert grid_indices(1, 1000).tolist() == [500]


def test_flow_grid_lies_on_the_schedulers_own_timesteps():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    objective = FlowMatchingObjective(scheduler)
    grid = objective.model_timesteps(objective.index_grid(4))
    torch.testing.assert_close(grid, scheduler.timesteps[[125, 375, 625, 875]].float())
    assert bool((grid[:-1] > grid[1:]).all())  # spans high to low noise


def test_pinned_timesteps_fix_every_draw_and_then_release_it():
    objective = FlowMatchingObjective(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000))
    latents, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    pinned = objective.index_grid(4)[1]
    with pinned_index(objective, pinned):
        batch = objective.prepare(latents, noise)
    assert batch.index.tolist() == [pinned.item()] * 3
    assert batch.timesteps.tolist() == [objective.model_timesteps(pinned).item()] * 3
    sigma = objective.sigmas(batch.index, latents.ndim)
    torch.testing.assert_close(batch.noisy_latents, (1 - sigma) * latents + sigma * noise)
    torch.manual_seed(0)
    drawn = objective.prepare(latents, noise).timesteps
    assert len(set(drawn.tolist())) > 1  # random again outside the block


def test_encode_once_reuses_results_for_the_same_inputs():
    calls = []

    class Encoders:
        device = "cpu"

        def encode_pixels(self, pixels, sample=True):
            calls.append("pixels")
            return pixels * 2

        def encode_prompts(self, prompts):
            calls.append("prompts")
            return {"encoder_hidden_states": torch.zeros(len(prompts), 2, 3)}

    once = EncodeOnce(Encoders())
    pixels, other = torch.ones(2, 3), torch.zeros(2, 3)
    for _ in range(3):
        assert torch.equal(once.encode_pixels(pixels), pixels * 2)
        once.encode_prompts(["a", "b"])
    once.encode_pixels(other)
    assert calls == ["pixels", "prompts", "pixels"] and once.device == "cpu"


def test_seeded_blocks_repeat_and_leave_the_outer_streams_alone():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = (torch.rand(1).item(), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    with seeded(7):
        first = (torch.rand(2), random.random(), np.random.rand())
    with seeded(7):
        second = (torch.rand(2), random.random(), np.random.rand())
    with preserved_rng_state():
        torch.rand(10)
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    assert (torch.rand(1).item(), random.random(), np.random.rand()) == expected
