"""The V4 / V3 / V2 ports compute what the original EasyAnimate code computes (fp32, CPU, tiny random weights).

``tests/data/legacy_reference.safetensors`` holds the original's outputs (aigc-apps/EasyAnimate at 45c298a, run in
a scratch environment outside this repository on the weights of ``make_tiny_model(..., seed=0)`` and the seeded
inputs of ``tests/legacy_inputs.py``): transformer forwards, VAE posteriors for several clip lengths, the
learned-variance loss of V2/V3, and a hash of the LoRA layer names the original's ``LoRANetwork`` creates. Only these
numbers are committed, never the original's code. Here the same fixtures go through our loader and our models.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from legacy_inputs import sigma_case, transformer_case, vae_frames, video_input
from safetensors import safe_open

from hf_easyanimate.models.inputs import transformer_inputs
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.lora import linear_module_paths
from hf_easyanimate.objectives import DiscreteTimestepSampler, LearnedSigmaObjective
from hf_easyanimate.objectives.base import NoisedBatch

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "legacy_reference.safetensors")
FIXTURES = ("v4-inp", "v4", "v3-inp", "v2")
ATOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    with safe_open(REFERENCE, framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


@pytest.fixture(scope="module")
def loaded(tiny_legacy_dirs):
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            mode = "inpaint" if name.endswith("-inp") else "normal"
            cache[name] = load_components(tiny_legacy_dirs(name), train_mode=mode)
        return cache[name]

    return get


def _prompt(version: str, inputs: dict) -> dict:
    """The prompt dict our encoders produce, from the original-keyword inputs."""
    if version == "v4":
        return {"encoder_hidden_states": inputs["encoder_hidden_states"],
                "encoder_attention_mask": inputs["text_embedding_mask"],
                "encoder_hidden_states_t5": inputs["encoder_hidden_states_t5"],
                "encoder_attention_mask_t5": inputs["text_embedding_mask_t5"]}
    return {"encoder_hidden_states": inputs["encoder_hidden_states"],
            "encoder_attention_mask": inputs["encoder_attention_mask"]}


@pytest.mark.parametrize("name", FIXTURES)
def test_transformer_forward_matches_the_original(name, loaded, reference):
    """Built by the model's own ``training_inputs`` (RoPE, image meta size, style, masks), as the trainer builds it."""
    tensors, _ = reference
    components = loaded(name)
    version = components.version
    case = transformer_case(version, name.endswith("-inp"), dict(components.transformer.config))
    inputs = case["inputs"]
    forward = transformer_inputs(
        components.transformer, case["noisy"], case["timestep"], _prompt(version, inputs),
        inpaint_latents=inputs["inpaint_latents"], clip_encoder_hidden_states=inputs.get("clip_encoder_hidden_states"),
        clip_attention_mask=inputs.get("clip_attention_mask"),
    )
    with torch.no_grad():
        output = components.transformer(**forward)[0]
    torch.testing.assert_close(output, tensors[f"{name}.transformer"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", FIXTURES)
def test_vae_posterior_matches_the_original(name, loaded, reference):
    tensors, _ = reference
    vae = loaded(name).vae
    for frames in vae_frames(loaded(name).version):
        with torch.no_grad():
            posterior = vae.encode(video_input(frames)).latent_dist
        torch.testing.assert_close(posterior.mean, tensors[f"{name}.vae.{frames}.mean"], rtol=0, atol=ATOL)
        torch.testing.assert_close(posterior.std, tensors[f"{name}.vae.{frames}.std"], rtol=0, atol=ATOL)
        grid = vae.frame_grid
        if frames == 1 or frames % grid.step == 0:  # on the grid, it says how many latent frames a clip gives
            assert posterior.mean.shape[2] == grid.latent_frames(frames)


@pytest.mark.parametrize("name", ["v3-inp", "v2"])
def test_sigma_loss_matches_the_original_training_losses(name, loaded, reference):
    tensors, _ = reference
    components = loaded(name)
    case = transformer_case(components.version, name.endswith("-inp"), dict(components.transformer.config))
    sample = sigma_case(case)
    objective = LearnedSigmaObjective(sampler=DiscreteTimestepSampler(num_steps=1000))
    index = sample["t"]
    noisy = objective.noisy(sample["latents"], sample["noise"], index)
    inputs = case["inputs"]
    forward = transformer_inputs(
        components.transformer, noisy, objective.model_timesteps(index), _prompt(components.version, inputs),
        inpaint_latents=inputs["inpaint_latents"], clip_encoder_hidden_states=inputs.get("clip_encoder_hidden_states"),
        clip_attention_mask=inputs.get("clip_attention_mask"),
    )
    with torch.no_grad():
        prediction = components.transformer(**forward)[0]
    batch = NoisedBatch(sample["latents"], sample["noise"], noisy, objective.model_timesteps(index),
                        objective.target(sample["latents"], sample["noise"], index), index)
    terms = objective.loss_terms(prediction, batch)
    torch.testing.assert_close(terms["loss"], tensors[f"{name}.sigma_loss"], rtol=0, atol=ATOL)
    torch.testing.assert_close(terms["vb"], tensors[f"{name}.sigma_vb"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", FIXTURES)
def test_lora_layers_are_the_originals(name, loaded, reference):
    """Every Linear by class name, motion modules included, the resampler's MultiheadAttention.out_proj excluded:
    the same layers, under the same kohya names, as the original's LoRANetwork(add_lora_in_attn_temporal=True)."""
    _, metadata = reference
    names = sorted(f"lora_unet__{path.replace('.', '_')}" for path in linear_module_paths(loaded(name).transformer))
    assert str(len(names)) == metadata[f"{name}.lora_count"]
    assert hashlib.sha256("\n".join(names).encode()).hexdigest() == metadata[f"{name}.lora_names_sha256"]
    if name.startswith("v4-inp"):
        assert "lora_unet__clip_projection_kv_proj" in names
        assert not any("attn_out_proj" in n for n in names)  # nn.MultiheadAttention.out_proj
    if name.startswith(("v3", "v2")):
        assert any("attn_temporal" in n for n in names)
