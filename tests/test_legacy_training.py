"""EasyAnimate V4 / V3 / V2 train end to end on the tiny fixtures, as their original trainer trains them."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import RECIPES, demo_overrides
from safetensors.torch import load_file

from hf_easyanimate.assembly import run
from hf_easyanimate.inference import merge_lora
from hf_easyanimate.models.inputs import transformer_inputs
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.lora.files import read_lora
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
# fixture, objective, train mode, frames on the VAE's grid (8n for V3/V4, 9n for V2)
VERSIONS = {"v4-inp": ("ddpm", "inpaint", 16), "v3-inp": ("sigma", "inpaint", 16), "v2": ("sigma", "normal", 18)}


def train(model_dir: str, demo_data: str, out: str, name: str, *extra: str):
    loss, mode, frames = VERSIONS[name]
    model_args, data_args, args = parse_args([
        DEMO, *demo_overrides(model_dir, demo_data, out), "--loss_type", loss, "--train_mode", mode,
        "--video_sample_n_frames", str(frames), "--logging_steps", "1", *extra,
    ])
    return run(model_args, data_args, args)


def losses_of(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_forty_steps_lower_the_loss_and_change_only_the_lora(name, tiny_legacy_dirs, demo_data, tmp_path):
    model_dir = tiny_legacy_dirs(name)
    out = str(tmp_path / "run")
    # The deterministic validation loss (fixed timestep grid, seeded noise) before the first step and after the last:
    # a training loss this noisy (one random timestep per sample) says little over 40 steps.
    trainer = train(model_dir, demo_data, out, name, "--max_steps", "40", "--save_steps", "40",
                    "--eval_data_meta", demo_data, "--eval_strategy", "steps", "--eval_steps", "40",
                    "--eval_on_start", "true", "--eval_timesteps", "4")
    losses = losses_of(trainer)
    assert len(losses) == 40 and all(map(torch.isfinite, torch.tensor(losses)))
    evals = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(evals) == 2 and evals[1] < 0.95 * evals[0], (evals, losses)

    reference = load_components(model_dir, train_mode=VERSIONS[name][1]).transformer.state_dict()
    trained = trainer.model.get_base_model().state_dict()
    base = {key.replace(".base_layer", ""): value for key, value in trained.items() if "lora_" not in key}
    assert base.keys() == reference.keys()
    for key, value in base.items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # both files, and they hold the same LoRA
    kohya, peft = read_lora(os.path.join(out, "easyanimate_lora.safetensors")), read_lora(out)
    assert kohya.modules.keys() == peft.modules.keys() and kohya.architecture == type(trainer.model.get_base_model()).__name__
    for path, module in peft.modules.items():
        torch.testing.assert_close(kohya.modules[path].delta(), module.delta())


def _merge_like_the_original(transformer: torch.nn.Module, path: str, multiplier: float = 1.0) -> None:
    """The original ``merge_lora`` rule, written here from its description: find each layer by walking the kohya
    name's underscore-separated parts with ``nn.Module.__getattr__`` (joining parts until a sub-module exists), then
    ``W += multiplier * alpha / rank * up @ down``."""
    tensors = load_file(path)
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        layer, _, element = key.partition(".")
        layers.setdefault(layer, {})[element] = value
    for layer, elements in layers.items():
        parts = layer.split("lora_unet_")[-1].split("_")[1:]  # drop the empty root name
        module, name = transformer, ""
        while parts:
            name = f"{name}_{parts.pop(0)}" if name else parts.pop(0)
            children = dict(module.named_children())  # nn.Module.__getattr__: sub-modules, never methods
            if name in children:
                module, name = children[name], ""
        up, down = elements["lora_up.weight"].float(), elements["lora_down.weight"].float()
        scale = float(elements["alpha"]) / down.shape[0]
        module.weight.data += multiplier * scale * (up @ down).to(module.weight.dtype)


@pytest.mark.parametrize("name", ["v4-inp", "v3-inp"])
def test_the_easyanimate_file_merged_by_the_original_rule_equals_the_peft_adapter(name, tiny_legacy_dirs, demo_data,
                                                                                 tmp_path):
    """No attn2 <-> attn1.add_* renaming for these models: in V2/V3 attn2 is the text cross-attention."""
    model_dir = tiny_legacy_dirs(name)
    out = str(tmp_path / "run")
    trainer = train(model_dir, demo_data, out, name, "--max_steps", "3", "--save_steps", "100", "--learning_rate", "5e-2")
    peft_model = trainer.model.eval()
    mode = VERSIONS[name][1]
    merged = load_components(model_dir, train_mode=mode).transformer.eval()
    _merge_like_the_original(merged, os.path.join(out, "easyanimate_lora.safetensors"))
    ours = load_components(model_dir, train_mode=mode).transformer.eval()
    merge_lora(ours, out)  # our merge from the peft adapter folder

    from legacy_inputs import transformer_case

    version = name.split("-")[0]
    case = transformer_case(version, True, dict(merged.config))
    prompt = ({"encoder_hidden_states": case["inputs"]["encoder_hidden_states"],
               "encoder_attention_mask": case["inputs"].get("text_embedding_mask",
                                                            case["inputs"].get("encoder_attention_mask")),
               "encoder_hidden_states_t5": case["inputs"].get("encoder_hidden_states_t5"),
               "encoder_attention_mask_t5": case["inputs"].get("text_embedding_mask_t5")})
    reference = {k: case["inputs"].get(k) for k in ("clip_encoder_hidden_states", "clip_attention_mask")}
    with torch.no_grad():
        outputs = [
            model(**transformer_inputs(merged, case["noisy"], case["timestep"], prompt,
                                       inpaint_latents=case["inputs"]["inpaint_latents"], **reference))[0]
            for model in (merged, ours, peft_model)
        ]
    base = load_components(model_dir, train_mode=mode).transformer.eval()
    with torch.no_grad():
        untrained = base(**transformer_inputs(base, case["noisy"], case["timestep"], prompt,
                                              inpaint_latents=case["inputs"]["inpaint_latents"], **reference))[0]
    assert (outputs[0] - untrained).abs().max() > 1e-4  # the LoRA changes the output ...
    torch.testing.assert_close(outputs[0], outputs[2], rtol=1e-4, atol=1e-5)  # ... exactly as the adapter does
    torch.testing.assert_close(outputs[1], outputs[2], rtol=1e-4, atol=1e-5)


def test_v3_inpaint_steps_see_clip_features_of_a_reference_frame(tiny_legacy_dirs, demo_data, tmp_path, monkeypatch):
    """The batch carries a reference frame per sample; the transformer gets its 768-d CLIP embedding and a
    batch-wide attention mask that is all ones or all zeros."""
    from hf_easyanimate.trainers import EasyAnimateTrainer

    seen = []
    original = EasyAnimateTrainer.reference_tokens

    def spy(self, inputs, transformer):
        tokens = original(self, inputs, transformer)
        seen.append((tuple(inputs["clip_pixel_values"].shape), tokens))
        return tokens

    monkeypatch.setattr(EasyAnimateTrainer, "reference_tokens", spy)
    train(tiny_legacy_dirs("v3-inp"), demo_data, str(tmp_path / "run"), "v3-inp", "--max_steps", "8",
          "--save_steps", "100")
    assert len(seen) == 8
    masks = set()
    for shape, tokens in seen:
        assert shape[-1] == 3 and len(shape) == 4  # (B, H, W, 3), 0-255
        assert tokens["clip_encoder_hidden_states"].shape == (shape[0], 768)
        mask = tokens["clip_attention_mask"]
        assert mask.shape == (shape[0], 8) and mask.min() == mask.max()
        masks.add(float(mask[0, 0]))
    assert masks == {0.0, 1.0}


def test_v4_trains_from_the_latent_cache(tiny_legacy_dirs, demo_data, tmp_path):
    """precompute + --latent_cache_dir on the 8n frame grid (normal mode: latents and both prompt embeddings)."""
    from hf_easyanimate.commands.precompute import main as precompute_main

    model_dir, cache = tiny_legacy_dirs("v4"), str(tmp_path / "cache")
    flags = [*demo_overrides(model_dir, demo_data, str(tmp_path / "run")), "--loss_type", "ddpm",
             "--video_sample_n_frames", "16", "--latent_cache_dir", cache]
    assert precompute_main([DEMO, *flags]) == 0
    model_args, data_args, args = parse_args([DEMO, *flags, "--max_steps", "3", "--save_steps", "100"])
    trainer = run(model_args, data_args, args)
    assert trainer.state.global_step == 3 and all(torch.isfinite(torch.tensor(losses_of(trainer))))
    assert not trainer.encoders.loaded  # nothing encoded during training: the VAE and text encoders stayed configs
    assert os.path.isfile(os.path.join(str(tmp_path / "run"), "adapter_model.safetensors"))
    assert json.load(open(os.path.join(str(tmp_path / "run"), "adapter_config.json")))["r"] == 8


def test_inpaint_trains_from_the_latent_cache(tiny_legacy_dirs, demo_data, tmp_path):
    """V4 inpaint from the cache: the VAE-encoded mask posteriors and frame 0's CLIP features come from the entries
    (a normal-mode cache is topped up, not trusted), and training touches no encoder. V3 takes the same path (its
    features are CLIP's image embedding instead of the patch tokens: the precompute unit test below covers both)."""
    name = "v4-inp"
    from hf_easyanimate.cache import LatentCache
    from hf_easyanimate.cache.data import INPAINT_MEAN, INPAINT_STD, REFERENCE_FEATURES
    from hf_easyanimate.commands.precompute import main as precompute_main

    loss, _, frames = VERSIONS[name]
    cache = str(tmp_path / "cache")
    flags = [*demo_overrides(tiny_legacy_dirs(name), demo_data, str(tmp_path / "run")), "--loss_type", loss,
             "--video_sample_n_frames", str(frames), "--latent_cache_dir", cache]
    assert precompute_main([DEMO, *flags, "--train_mode", "normal"]) == 0
    normal_entries = len(LatentCache(cache))
    assert precompute_main([DEMO, *flags, "--train_mode", "inpaint"]) == 0
    store = LatentCache(cache)
    assert len(store) == normal_entries  # the same keys, now with the inpaint tensors
    names = {name for key in store._info for name in store.info(key)["tensors"]}
    assert {"inpaint_first_mean", "inpaint_full_std", REFERENCE_FEATURES} <= names

    model_args, data_args, args = parse_args([DEMO, *flags, "--train_mode", "inpaint", "--max_steps", "3",
                                              "--save_steps", "100"])
    trainer = run(model_args, data_args, args)
    assert trainer.state.global_step == 3 and all(torch.isfinite(torch.tensor(losses_of(trainer))))
    assert not trainer.encoders.loaded  # neither the VAE nor CLIP ran during training
    batch = next(iter(trainer.get_train_dataloader()))
    latents = batch["latent_mean"]
    assert batch[INPAINT_MEAN].shape == (latents.shape[0], 2 * latents.shape[1], *latents.shape[2:])
    assert batch[INPAINT_STD].shape == batch[INPAINT_MEAN].shape and bool((batch[INPAINT_STD] > 0).all())
    assert batch[REFERENCE_FEATURES].shape[0] == latents.shape[0]


@pytest.mark.parametrize("name", ["v4-inp", "v3-inp"])
def test_cached_inpaint_conditioning_is_the_pixel_paths(name, tiny_legacy_dirs):
    """What precompute stores for V3/V4 inpaint equals what a pixel step builds for the same mask (posterior mode)
    and the same reference frame (frame 0)."""
    from hf_easyanimate.cache.data import INPAINT_FIRST, INPAINT_FULL, REFERENCE_FEATURES, first_frame_mask
    from hf_easyanimate.cache.precompute import encoded_mask_tensors
    from hf_easyanimate.models.inpaint import EncodedMaskInpaintConditioner
    from hf_easyanimate.models.vae import encode_pixels

    components = load_components(tiny_legacy_dirs(name), train_mode="inpaint")
    vae, scale = components.vae, float(components.vae.config.scaling_factor)
    torch.manual_seed(0)
    pixels = torch.rand(1, 16, 3, 32, 32) * 2 - 1
    stored = encoded_mask_tensors(vae, pixels, "video", components.image_encoder)
    conditioner = EncodedMaskInpaintConditioner(scaling_factor=scale, zero_text_to_video=0.0)

    def mode(x, sample):
        return encode_pixels(vae, x, 1, sample=False)

    latents = mode(pixels, False)
    for name, mask in ((INPAINT_FIRST, first_frame_mask(16, 32, 32)[None]), (INPAINT_FULL, torch.ones(1, 16, 1, 32, 32))):
        expected = conditioner(pixels, mask, latents, mode)
        torch.testing.assert_close(stored[f"{name}_mean"][None] * scale, expected, atol=1e-5, rtol=1e-5)
    frame = (pixels[0, 0].permute(1, 2, 0) * 0.5 + 0.5) * 255
    torch.testing.assert_close(stored[REFERENCE_FEATURES], components.image_encoder(frame[None], device="cpu")[0])
