"""Seeded inputs of the V2-V4 parity check, shared by the test and the reference run of the original code."""

from __future__ import annotations

import torch

BATCH, FRAMES, HEIGHT, WIDTH = 2, 3, 8, 12  # latent grid of the transformer inputs


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def transformer_case(version: str, inpaint: bool, config: dict) -> dict:
    """Noisy latents, timesteps and the text / inpaint / CLIP inputs of one forward, in the original's keywords."""
    g = _generator(7)
    latent = 4
    noisy = torch.randn(BATCH, latent, FRAMES, HEIGHT, WIDTH, generator=g)
    inpaint_latents = torch.randn(BATCH, 2 * latent, FRAMES, HEIGHT, WIDTH, generator=g) if inpaint else None
    case: dict = {"noisy": noisy, "pixel_size": (HEIGHT * 8, WIDTH * 8)}
    if version == "v4":
        case["timestep"] = torch.tensor([10.0, 900.0])
        bert = torch.randn(BATCH, config["text_len"], config["cross_attention_dim"], generator=g)
        t5 = torch.randn(BATCH, config["text_len_t5"], config["cross_attention_dim_t5"], generator=g)
        bert_mask = torch.ones(BATCH, config["text_len"], dtype=torch.long)
        bert_mask[0, 5:] = 0
        t5_mask = torch.ones(BATCH, config["text_len_t5"], dtype=torch.long)
        t5_mask[0, 9:] = 0
        inputs = {"encoder_hidden_states": bert, "text_embedding_mask": bert_mask,
                  "encoder_hidden_states_t5": t5, "text_embedding_mask_t5": t5_mask, "inpaint_latents": inpaint_latents}
        if inpaint:
            inputs["clip_encoder_hidden_states"] = torch.randn(BATCH, 16, config["projection_dim"], generator=g)
            inputs["clip_attention_mask"] = torch.tensor([[1.0] * config["n_query"], [0.0] * config["n_query"]])
    else:
        case["timestep"] = torch.tensor([10, 900])
        text = torch.randn(BATCH, 11, config["caption_channels"], generator=g)
        mask = torch.ones(BATCH, 11, dtype=torch.long)
        mask[0, 7:] = 0
        inputs = {"encoder_hidden_states": text, "encoder_attention_mask": mask, "inpaint_latents": inpaint_latents}
        if inpaint:
            inputs["clip_encoder_hidden_states"] = torch.randn(BATCH, 768, generator=g)
            inputs["clip_attention_mask"] = torch.tensor([[1] * 8, [0] * 8])
    case["inputs"] = inputs
    return case


def sigma_case(case: dict) -> dict:
    """Clean latents, noise and spaced indices for the learned-variance loss."""
    g = _generator(11)
    latents = torch.randn(case["noisy"].shape, generator=g)
    return {"latents": latents, "noise": torch.randn(latents.shape, generator=g), "t": torch.tensor([0, 600])}


def vae_frames(version: str) -> tuple[int, ...]:
    """Clip lengths to encode: V2 chunks 9 frames causally; V3/V4 encode a lone first frame when the count is odd."""
    return (1, 9, 18) if version == "v2" else (1, 8, 9, 16)


def video_input(frames: int) -> torch.Tensor:
    return torch.rand(1, 3, frames, 32, 48, generator=_generator(frames)) * 2 - 1
