"""No secret on disk: the Hub token never lands in output_dir, checkpoints, logs, TensorBoard or the Hub."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import RECIPES, demo_overrides

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.utils.secrets import mask, redacted, save_training_args, secret_values

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
CLI_TOKEN = "hf_cliMARKERq7ZpX3vLw9"
ENV_TOKEN = "hf_envMARKERk2YtR8mNb4"


def files_containing(root: str, markers: list[bytes]) -> list[tuple[str, bytes]]:
    hits = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                content = handle.read()
            hits += [(path, marker) for marker in markers if marker in content]
    return hits


def test_redacted_copy_keeps_everything_but_secrets(tmp_path):
    from hf_easyanimate.trainers import EasyAnimateTrainingArguments

    args = EasyAnimateTrainingArguments(output_dir=str(tmp_path), hub_token=CLI_TOKEN, use_cpu=True, report_to="none")
    clone = redacted(args)
    assert clone.hub_token is None and args.hub_token == CLI_TOKEN  # the live arguments keep the token
    assert clone.learning_rate == args.learning_rate and clone.output_dir == args.output_dir
    path = tmp_path / "training_args.bin"
    save_training_args(args, path)
    assert CLI_TOKEN.encode() not in path.read_bytes()
    assert torch.load(path, weights_only=False).hub_token is None
    assert secret_values(args) == [CLI_TOKEN]
    assert mask(f"token={CLI_TOKEN}!", [CLI_TOKEN]) == "token=<redacted>!"


@pytest.mark.timeout(900)
def test_no_token_in_any_file_log_event_or_upload(tiny_model_dir, demo_data, tiny_clip_dir, tmp_path, monkeypatch,
                                                  capfd, hub_recorder):
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    out = str(tmp_path / "run")
    common = [
        DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--hub_token", CLI_TOKEN, "--save_steps", "2",
        "--logging_steps", "1", "--report_to", "tensorboard", "--log_level", "info",
        "--validation_prompts", "a red square moving left", "--validation_steps", "2",
        "--validation_num_inference_steps", "2", "--validation_num_frames", "5", "--validation_clip_model", tiny_clip_dir,
        "--push_to_hub", "true", "--hub_model_id", "someone/tiny-lora", "--hub_strategy", "all_checkpoints",
    ]
    run(*parse_args([*common, "--max_steps", "4"]))  # checkpoint-2 and checkpoint-4
    assert {"checkpoint-2", "checkpoint-4"} <= set(os.listdir(out))
    # Resume: the token comes from the command line again, never from the checkpoint.
    trainer = run(*parse_args([*common, "--max_steps", "6", "--resume_from_checkpoint", "latest"]))
    assert trainer.state.global_step == 6 and trainer.resumed_from.endswith("checkpoint-4")
    assert os.path.isdir(os.path.join(out, "validation", "step-6"))
    assert any(name.startswith("events.out.tfevents") for _, _, names in os.walk(out) for name in names)
    assert set(hub_recorder["tokens"]) == {CLI_TOKEN}  # every Hub call still authenticated

    markers = [CLI_TOKEN.encode(), ENV_TOKEN.encode()]
    assert files_containing(out, markers) == []
    checkpoints = sorted(name for name in os.listdir(out) if name.startswith("checkpoint-"))
    assert len(checkpoints) == 2  # save_total_limit 2 of the demo recipe: checkpoint-4 (resumed from) and -6
    for checkpoint in checkpoints:
        saved = torch.load(os.path.join(out, checkpoint, "training_args.bin"), weights_only=False)
        assert saved.hub_token is None and saved.save_steps == 2
    uploaded = [(commit["message"], name) for commit in hub_recorder["commits"]
                for name, entry in commit["files"].items() if any(m in entry["content"] for m in markers)]
    assert uploaded == [] and len(hub_recorder["commits"]) >= 4
    printed = capfd.readouterr()
    for marker in (CLI_TOKEN, ENV_TOKEN):
        assert marker not in printed.out and marker not in printed.err
