"""A run reads its checkpoint's configs once, and every family is found from them (models/checkpoint.py)."""

from __future__ import annotations

import builtins
import os

import pytest
from conftest import RECIPES, demo_overrides

from hf_easyanimate.assembly import run
from hf_easyanimate.models.checkpoint import CheckpointConfigNotFound, plan_checkpoint, read_checkpoint
from hf_easyanimate.models.family import families, family_named
from hf_easyanimate.models.published import published_configs
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


@pytest.fixture
def counted_reads(monkeypatch):
    """Every open() for reading of a path ending in transformer/config.json (writing a tiny model is not a read)."""
    reads: list[str] = []
    real_open = builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        if str(file).replace(os.sep, "/").endswith("transformer/config.json") and not set(mode) & set("wax+"):
            reads.append(os.path.realpath(str(file)))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    return reads


@pytest.mark.parametrize("release", ["v5.1", "v4"])
def test_a_run_reads_the_transformer_config_once(release, tiny_model_dir, tiny_legacy_dirs, demo_data, tmp_path,
                                                 counted_reads):
    model = tiny_model_dir if release == "v5.1" else tiny_legacy_dirs("v4")
    flags = [] if release == "v5.1" else ["--loss_type", "ddpm"]
    trainer = run(*parse_args([DEMO, *demo_overrides(model, demo_data, str(tmp_path / "run")), "--max_steps", "1",
                               "--save_steps", "100", *flags]))
    assert trainer.state.global_step == 1
    assert counted_reads == [os.path.realpath(os.path.join(model, "transformer", "config.json"))]


@pytest.mark.parametrize("release", [family.version for family in families()])
def test_every_tiny_checkpoint_is_found_as_the_family_that_wrote_it(release, tmp_path):
    family = family_named(release)
    folder = family.write_tiny(str(tmp_path / release), inpaint=family.has_inpaint_release)
    checkpoint = read_checkpoint(folder)
    assert checkpoint.family is family
    assert checkpoint.block_count == checkpoint.transformer_config["num_layers"]
    assert checkpoint.frame_grid == family.frame_grid(checkpoint.vae_config)


def test_the_published_configs_plan_as_their_release():
    for name, published in published_configs().items():
        checkpoint = plan_checkpoint(published.repo_id)
        assert checkpoint.version == published.version, name
        assert checkpoint.source.startswith(f"packaged config of {published.repo_id}")


def test_an_unknown_model_names_where_its_config_was_looked_for():
    with pytest.raises(CheckpointConfigNotFound, match="someone/unknown-model.*Hugging Face cache.*published.json"):
        plan_checkpoint("someone/unknown-model")
