"""Latent cache: cached and uncached runs train alike, keys follow the settings, precompute resumes."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
from conftest import RECIPES, demo_overrides, run_cli

from hf_easyanimate.assembly import run
from hf_easyanimate.cache import CachedDataset, CacheMissError, LatentCache
from hf_easyanimate.commands.precompute import main as precompute_main
from hf_easyanimate.config import ArgumentValidationError
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


def flags(model_dir: str, meta: str, out: str, *extra: str) -> list[str]:
    """The tiny demo, augmentation-free, logging every step."""
    return [DEMO, *demo_overrides(model_dir, meta, out), "--max_steps", "4", "--logging_steps", "1",
            "--save_steps", "100", "--fixed_frame_window", "true", *extra]


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.fixture(scope="module")
def filled_cache(tiny_model_dir, demo_data, tmp_path_factory) -> str:
    cache = str(tmp_path_factory.mktemp("latents"))
    out = str(tmp_path_factory.mktemp("unused"))
    assert precompute_main(flags(tiny_model_dir, demo_data, out, "--latent_cache_dir", cache)) == 0
    return cache


def test_cached_run_matches_uncached_loss_sequence(tiny_model_dir, demo_data, filled_cache, tmp_path):
    uncached = run(*parse_args(flags(tiny_model_dir, demo_data, str(tmp_path / "a"))))
    cached = run(*parse_args(flags(tiny_model_dir, demo_data, str(tmp_path / "b"), "--latent_cache_dir", filled_cache)))
    assert isinstance(cached.train_dataset, CachedDataset) and not isinstance(uncached.train_dataset, CachedDataset)
    assert len(losses(cached)) == 4
    assert losses(cached) == pytest.approx(losses(uncached), abs=1e-5)


def test_cached_run_keeps_encoders_off_the_accelerator(tiny_model_dir, demo_data, filled_cache, tmp_path):
    # With an eval set the encoders are loaded, but live in CPU memory and visit the accelerator per eval batch.
    trainer = run(*parse_args(flags(tiny_model_dir, demo_data, str(tmp_path / "b"), "--max_steps", "1",
                                    "--latent_cache_dir", filled_cache, "--eval_data_meta", demo_data)))
    assert trainer.encoders.loaded and trainer.encoders.low_vram and trainer.encoders.home == torch.device("cpu")
    assert trainer.encoders.vae.device == torch.device("cpu")


def test_cached_run_with_nothing_to_encode_never_reads_encoder_weights(tiny_model_dir, demo_data, filled_cache,
                                                                       tmp_path):
    trainer = run(*parse_args(flags(tiny_model_dir, demo_data, str(tmp_path / "e"), "--max_steps", "2",
                                    "--latent_cache_dir", filled_cache)))
    encoders = trainer.encoders
    assert not encoders.loaded and encoders.vae.device == torch.device("meta")
    assert all(p.is_meta for m in encoders.prompt_encoder.text_encoders for p in m.parameters())
    assert len(losses(trainer)) == 2 and all(math.isfinite(x) for x in losses(trainer))
    with pytest.raises(RuntimeError, match="built without weights"):
        encoders.encode_prompts(["a prompt"])


def test_changed_video_sample_size_misses_the_cache(tiny_model_dir, demo_data, filled_cache, tmp_path):
    args = parse_args(flags(tiny_model_dir, demo_data, str(tmp_path / "c"), "--latent_cache_dir", filled_cache,
                            "--video_sample_size", "48"))
    with pytest.raises(CacheMissError, match=r"(?s)8 training sample\(s\).*hf-easyanimate precompute"):
        run(*args)  # the 8 clips changed size; the 4 images (image_sample_size) still hit


def test_changed_model_path_misses_the_cache(tiny_model_dir, demo_data, filled_cache, tmp_path):
    moved = shutil.copytree(tiny_model_dir, str(tmp_path / "model-copy"))
    with pytest.raises(CacheMissError, match=r"25 training sample\(s\) or caption\(s\)"):
        run(*parse_args(flags(moved, demo_data, str(tmp_path / "d"), "--latent_cache_dir", filled_cache)))


@pytest.mark.parametrize("flag", ["--random_flip", "--random_frame_crop", "--random_hw_adapt"])
def test_random_augmentation_is_refused_with_the_cache(tiny_model_dir, demo_data, tmp_path, flag):
    with pytest.raises(ArgumentValidationError, match=flag):
        parse_args(flags(tiny_model_dir, demo_data, str(tmp_path), "--latent_cache_dir", str(tmp_path), flag, "true"))


def test_sample_posterior_draws_what_encode_pixels_draws(tiny_model_dir):
    from hf_easyanimate.models.loading import load_components
    from hf_easyanimate.models.vae import encode_pixels, encode_posterior, sample_posterior

    vae = load_components(tiny_model_dir).vae
    pixels = torch.rand(3, 5, 3, 32, 32) * 2 - 1
    mean, std = encode_posterior(vae, pixels, 2)
    for mini_batch in (1, 2):
        torch.manual_seed(7)
        expected = encode_pixels(vae, pixels, mini_batch)
        torch.manual_seed(7)
        assert torch.allclose(sample_posterior(mean, std, mini_batch, vae.config.scaling_factor), expected, atol=1e-6)


def precompute_parts(model_dir: str, meta: str, tmp_path) -> tuple[str, object, object, object, object]:
    """(cache folder, cached dataset, plan config, VAE, prompt encoder) for a precompute of the tiny demo."""
    from hf_easyanimate.cache.build import build_cached_data, cache_spec
    from hf_easyanimate.models.loading import load_components
    from hf_easyanimate.models.text import build_prompt_encoder

    cache = str(tmp_path / "latents")
    model_args, data_args, _ = parse_args(flags(model_dir, meta, str(tmp_path / "o"), "--latent_cache_dir", cache))
    components = load_components(model_dir)
    encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    spec = cache_spec(model_args, data_args, components.vae, encoder, inpaint=False)
    dataset, _, _, config = build_cached_data(data_args, spec, 2, 42, 1, 0, 4)
    return cache, dataset, config, components.vae, encoder


def test_precompute_resumes_where_a_killed_run_stopped(tiny_model_dir, demo_data, tmp_path):
    from hf_easyanimate.cache.precompute import precompute

    cache, dataset, config, vae, encoder = precompute_parts(tiny_model_dir, demo_data, tmp_path)
    first = precompute(dataset, config, vae, encoder, "cpu", progress=False, entries_per_shard=1)
    assert first.latents_written == 12 and first.latents_present == 0 and first.failed == 0
    shards = sorted(f for f in os.listdir(cache) if f.endswith(".safetensors"))
    # A killed run: five shards never made it, one died mid-write (only its temporary file exists).
    for name in shards[:5]:
        os.remove(os.path.join(cache, name))
    open(os.path.join(cache, ".rank000-dead.safetensors.tmp"), "wb").write(b"partial")
    dataset.cache = LatentCache(cache)
    second = precompute(dataset, config, vae, encoder, "cpu", progress=False)
    assert second.latents_written + second.prompts_written == 5
    assert second.latents_present + second.prompts_present == len(shards) - 5
    assert dataset.missing(config) == []


def test_cli_precompute_then_train(tiny_model_dir, demo_data, tmp_path):
    cache, out = str(tmp_path / "latents"), str(tmp_path / "run")
    common = [*flags(tiny_model_dir, demo_data, out, "--latent_cache_dir", cache)[1:], "--max_steps", "2"]
    refused = run_cli("train", DEMO, *common)
    assert refused.returncode == 2 and "hf-easyanimate precompute" in refused.stderr, refused.stderr[-2000:]
    first = run_cli("precompute", DEMO, *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "latents: 12 encoded, 0 already cached" in first.stdout
    again = run_cli("precompute", DEMO, *common)
    assert "latents: 0 encoded, 12 already cached" in again.stdout
    trained = run_cli("train", DEMO, *common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert os.path.exists(os.path.join(out, "adapter_model.safetensors"))


def test_inpaint_conditioning_from_cache_equals_encoding_the_masked_video(tiny_inpaint_model_dir):
    from hf_easyanimate.cache.data import first_frame_mask
    from hf_easyanimate.models.inpaint import InpaintConditioner, masked_pixels
    from hf_easyanimate.models.loading import load_components
    from hf_easyanimate.models.vae import encode_pixels

    vae = load_components(tiny_inpaint_model_dir).vae
    pixels = torch.rand(1, 9, 3, 32, 32) * 2 - 1
    mask = first_frame_mask(9, 32, 32)[None]
    encode = lambda p, sample=False: encode_pixels(vae, p, 1, sample=sample)  # noqa: E731
    latents = encode(pixels)
    conditioner = InpaintConditioner(scaling_factor=vae.config.scaling_factor)
    cached = encode(masked_pixels(pixels, mask))  # what precompute stores
    assert torch.allclose(conditioner.from_latents(mask, cached, latents), conditioner(pixels, mask, latents, encode))


def test_inpaint_training_from_cache(tiny_inpaint_model_dir, demo_data, tmp_path):
    cache = str(tmp_path / "latents")
    argv = flags(tiny_inpaint_model_dir, demo_data, str(tmp_path / "run"), "--latent_cache_dir", cache,
                 "--train_mode", "inpaint", "--max_steps", "3")
    assert precompute_main(argv) == 0
    assert any("first_frame" in LatentCache(cache).info(key)["tensors"] for key in LatentCache(cache)._info)
    trainer = run(*parse_args(argv))
    assert len(losses(trainer)) == 3 and all(torch.isfinite(torch.tensor(losses(trainer))))


def test_ranks_encode_disjoint_shares_that_cover_the_run(tiny_model_dir, demo_data, tmp_path):
    from hf_easyanimate.cache.precompute import precompute

    cache, dataset, config, vae, encoder = precompute_parts(tiny_model_dir, demo_data, tmp_path)
    reports = [precompute(dataset, config, vae, encoder, "cpu", rank=rank, world_size=2, progress=False)
               for rank in (0, 1)]
    assert [r.latents_written for r in reports] == [6, 6]
    assert sorted(os.listdir(cache))[0].startswith("rank000") and sorted(os.listdir(cache))[-1].startswith("rank001")
    assert LatentCache(cache).__len__() == 12 + sum(r.prompts_written for r in reports)
    assert dataset.missing(config) == []


def test_precompute_does_not_load_transformer_weights(tiny_inpaint_model_dir):
    from hf_easyanimate.models.loading import load_components

    components = load_components(tiny_inpaint_model_dir, transformer_weights=False)
    assert components.is_inpaint  # the config is there
    assert all(p.device.type == "meta" for p in components.transformer.parameters())
