"""Pieces of the deterministic validation loss and of side work that must not disturb training's RNG.

A diffusion loss is noisy by construction (random timestep, random noise, random VAE posterior sample,
random frame window). To compare ``eval_loss`` across steps, evaluation scores every held-out clip at a
fixed grid of timesteps with all random draws seeded, and puts the training RNG stream back afterwards.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from transformers import set_seed

from ..objectives import Objective


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block without moving the Python, NumPy, torch CPU or CUDA random streams of the caller."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every random stream for the block (transformers' ``set_seed``) and restore them afterwards."""
    with preserved_rng_state():
        set_seed(seed)
        yield


@contextlib.contextmanager
def pinned_index(objective: Objective, index: torch.Tensor) -> Iterator[Objective]:
    """Within the block, every batch ``objective`` prepares gets the single grid position ``index``.

    Only the draw is replaced (an instance attribute shadowing ``sample_index``); the objective's own
    ``prepare`` (noise options, targets, ...) runs unchanged. Relies on the :class:`Objective` contract that
    ``prepare`` draws its timesteps through ``sample_index``.
    """

    def fixed(batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        return index.reshape(1).expand(batch_size).to(device)

    objective.sample_index = fixed
    try:
        yield objective
    finally:
        del objective.sample_index


class EncodeOnce:
    """Wraps the frozen encoders so that re-encoding the very same tensor (or prompt list) reuses the result.

    Scoring one batch at several timesteps calls ``compute_loss`` several times with the same inputs; the VAE
    (the slow part) and the text encoder then run once per batch, and every timestep sees the same latents.
    """

    def __init__(self, encoders) -> None:
        self.encoders = encoders
        self._pixels: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}  # -> (input kept alive, latents)
        self._prompts: dict[tuple[str, ...], dict] = {}

    def __getattr__(self, name: str):
        return getattr(self.encoders, name)

    def encode_pixels(self, pixels: torch.Tensor, sample: bool = True) -> torch.Tensor:
        key = (id(pixels), sample)
        cached = self._pixels.get(key)
        if cached is None or cached[0] is not pixels:
            cached = self._pixels[key] = (pixels, self.encoders.encode_pixels(pixels, sample=sample))
        return cached[1]

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        key = tuple(prompts)
        if key not in self._prompts:
            self._prompts[key] = self.encoders.encode_prompts(prompts)
        return self._prompts[key]
