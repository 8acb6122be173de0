"""Damaged state never stops a run: each kind of damage to the newest checkpoint is found before the run commits
to it. ``latest`` takes the previous intact checkpoint with one warning naming the file; a damaged checkpoint named
on the command line is one line, exit status 2, no traceback. Leftovers of an interrupted save are removed at
start-up, and files a user passes that do not open are one-line errors too."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
from conftest import RECIPES, demo_overrides
from safetensors.torch import load_file, save_file

from hf_easyanimate.assembly import run
from hf_easyanimate.cli import main
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.checkpoints import inspect_checkpoint
from hf_easyanimate.training.resume import CheckpointNotFound, resolve_resume

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
RUN = ["--max_steps", "4", "--save_steps", "2", "--save_total_limit", "3", "--logging_steps", "1"]


class Payload:
    """Pickled, this runs ``touch MARKER`` when unpickled without ``weights_only``: it must never run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def truncate(path: str, keep: float = 0.5) -> None:
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


def write(path: str, text: str | bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)


def set_step(folder: str, step: object) -> None:
    path = os.path.join(folder, "trainer_state.json")
    state = json.load(open(path))
    state["global_step"] = step
    write(path, json.dumps(state))


def payload(folder: str, name: str) -> None:
    torch.save(Payload(os.path.join(folder, "PAYLOAD_RAN")), os.path.join(folder, name))


def wrong_rank(folder: str) -> None:
    path = os.path.join(folder, "adapter_model.safetensors")
    tensors = load_file(path)
    key = next(key for key in tensors if key.endswith("lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_file(tensors, path)


# Each damage: (how to do it to a checkpoint folder, the file the message must name).
DAMAGE = {
    "truncated trainer_state": (lambda f: truncate(os.path.join(f, "trainer_state.json")), "trainer_state.json"),
    "empty trainer_state": (lambda f: write(os.path.join(f, "trainer_state.json"), ""), "trainer_state.json"),
    "non-integer step": (lambda f: set_step(f, "four"), "trainer_state.json"),
    "truncated adapter": (lambda f: truncate(os.path.join(f, "adapter_model.safetensors")), "adapter_model"),
    "garbage adapter": (lambda f: write(os.path.join(f, "adapter_model.safetensors"), os.urandom(4096)),
                        "adapter_model"),
    "missing adapter": (lambda f: os.remove(os.path.join(f, "adapter_model.safetensors")), "adapter_model"),
    "adapter of another rank": (wrong_rank, "adapter_model"),
    "truncated optimizer": (lambda f: truncate(os.path.join(f, "optimizer.pt")), "optimizer.pt"),
    "pickle payload in rng_state": (lambda f: payload(f, "rng_state.pth"), "rng_state.pth"),
    "pickle payload in optimizer": (lambda f: payload(f, "optimizer.pt"), "optimizer.pt"),
    "pickle payload in scheduler": (lambda f: payload(f, "scheduler.pt"), "scheduler.pt"),
}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, demo_data, tmp_path_factory) -> str:
    """A finished run with intact checkpoint-2 and checkpoint-4: copied, then damaged, by each test."""
    out = str(tmp_path_factory.mktemp("trained") / "out")
    run(*parse_args([DEMO, *RUN, *demo_overrides(tiny_model_dir, demo_data, out)]))
    assert {"checkpoint-2", "checkpoint-4"} <= set(os.listdir(out))
    return out


@pytest.fixture
def damaged_copy(trained, tmp_path):
    """A copy of the run's checkpoints only (no final adapter), so resuming it trains from the checkpoint."""
    out = str(tmp_path / "out")
    for name in ("checkpoint-2", "checkpoint-4"):
        shutil.copytree(os.path.join(trained, name), os.path.join(out, name))
    return out


@pytest.mark.parametrize("kind", DAMAGE)
def test_latest_skips_a_damaged_checkpoint_with_one_warning(kind, damaged_copy, caplog):
    damage, file = DAMAGE[kind]
    newest = os.path.join(damaged_copy, "checkpoint-4")
    damage(newest)
    with caplog.at_level(logging.WARNING):
        chosen = resolve_resume("latest", damaged_copy)
    assert chosen == os.path.join(damaged_copy, "checkpoint-2")
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "checkpoint-4" in warnings[0] and file in warnings[0] and "resuming from checkpoint-2" in warnings[0]
    assert not os.path.exists(os.path.join(newest, "PAYLOAD_RAN"))


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_named_damaged_checkpoint_is_one_line_and_exit_status_2(kind, damaged_copy, tiny_model_dir, demo_data,
                                                                    capsys):
    damage, file = DAMAGE[kind]
    newest = os.path.join(damaged_copy, "checkpoint-4")
    damage(newest)
    code = main(["train", DEMO, *RUN, "--max_steps", "6", "--resume_from_checkpoint", newest,
                 *demo_overrides(tiny_model_dir, demo_data, damaged_copy)])
    error = capsys.readouterr().err
    assert code == 2, error
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in error, error
    assert lines[0].startswith("hf-easyanimate: error: --resume_from_checkpoint") and file in lines[0]
    assert not os.path.exists(os.path.join(newest, "PAYLOAD_RAN"))
    assert not os.path.exists(os.path.join(damaged_copy, ".hf_easyanimate.lock"))  # a refused run let go of it


def test_latest_resumes_from_the_previous_checkpoint_and_reaches_the_same_weights(trained, damaged_copy,
                                                                                   tiny_model_dir, demo_data):
    DAMAGE["pickle payload in optimizer"][0](os.path.join(damaged_copy, "checkpoint-4"))
    trainer = run(*parse_args([DEMO, *RUN, "--resume_from_checkpoint", "latest",
                               *demo_overrides(tiny_model_dir, demo_data, damaged_copy)]))
    assert trainer.state.global_step == 4
    expected = load_file(os.path.join(trained, "adapter_model.safetensors"))
    resumed = load_file(os.path.join(damaged_copy, "adapter_model.safetensors"))
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert inspect_checkpoint(os.path.join(damaged_copy, "checkpoint-4")).intact  # rewritten by the resumed run


def test_no_intact_checkpoint_says_what_was_found(damaged_copy):
    DAMAGE["truncated adapter"][0](os.path.join(damaged_copy, "checkpoint-4"))
    DAMAGE["empty trainer_state"][0](os.path.join(damaged_copy, "checkpoint-2"))
    with pytest.raises(CheckpointNotFound) as raised:
        resolve_resume("latest", damaged_copy)
    message = str(raised.value)
    assert "\n" not in message and "checkpoint-4" in message and "checkpoint-2" in message
    assert "adapter_model.safetensors" in message and "trainer_state.json" in message


@pytest.mark.parametrize("missing", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(missing, damaged_copy, caplog):
    newest = os.path.join(damaged_copy, "checkpoint-4")
    os.remove(os.path.join(newest, missing))
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("latest", damaged_copy) == newest
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and missing in warnings[0] and "no longer exactly" in warnings[0], warnings


def test_start_up_removes_the_leftovers_of_an_interrupted_save(damaged_copy, tiny_model_dir, demo_data, caplog):
    # What a SIGKILL during the final save leaves: the staging folder with a temporary file, and a temporary beside
    # the final adapter.
    staging = os.path.join(damaged_copy, ".partial-save")
    os.makedirs(os.path.join(staging, ".adapter-x1y2"))
    write(os.path.join(staging, ".adapter-x1y2", "adapter_model.safetensors"), b"half")
    write(os.path.join(damaged_copy, ".easyanimate_lora.k3j2h1.partial.safetensors"), b"half")
    with caplog.at_level(logging.WARNING):
        trainer = run(*parse_args([DEMO, *RUN, "--max_steps", "5", "--resume_from_checkpoint", "latest",
                                   *demo_overrides(tiny_model_dir, demo_data, damaged_copy)]))
    assert trainer.state.global_step == 5
    left = sorted(os.listdir(damaged_copy))
    assert not [name for name in left if name.startswith(".")], left  # no leftovers, and the lock released
    assert any("interrupted save" in record.getMessage() for record in caplog.records)


def test_a_truncated_transformer_path_is_one_line(trained, tiny_model_dir, demo_data, tmp_path, capsys):
    weights = str(tmp_path / "transformer.safetensors")
    shutil.copy(os.path.join(trained, "checkpoint-2", "adapter_model.safetensors"), weights)
    truncate(weights, keep=0.3)
    code = main(["train", DEMO, "--transformer_path", weights,
                 *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "out"))])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--transformer_path {weights}" in lines[0] and "truncated" in lines[0], error


def test_export_lora_into_an_existing_file_is_one_line(trained, tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.write_text("mine")
    code = main(["export-lora", trained, "--to", "peft", str(existing)])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error and "existing file" in error
    assert existing.read_text() == "mine"


def test_a_damaged_cache_shard_is_left_out_then_encoded_again(tiny_model_dir, demo_data, tmp_path, caplog):
    from hf_easyanimate.cache.store import LatentCache
    from hf_easyanimate.commands.precompute import main as precompute_main

    cache = str(tmp_path / "latents")
    argv = [DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "run")), "--latent_cache_dir", cache]
    assert precompute_main(argv) == 0
    entries = len(LatentCache(cache))
    shard = sorted(name for name in os.listdir(cache) if name.endswith(".safetensors"))[0]
    truncate(os.path.join(cache, shard))
    with caplog.at_level(logging.WARNING):
        store = LatentCache(cache)
    assert list(store.damaged) == [os.path.join(cache, shard)] and len(store) < entries
    assert [r.getMessage() for r in caplog.records if shard in r.getMessage()], "no warning names the shard"
    assert precompute_main(argv) == 0  # sets it aside and encodes what it held again
    assert os.path.exists(os.path.join(cache, shard + ".damaged"))
    again = LatentCache(cache)
    assert not again.damaged and len(again) == entries
