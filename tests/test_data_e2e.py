"""The data side end to end: bad data during training, --strict_data, validate-data and buckets commands."""

from __future__ import annotations

import json
import os

import pytest
from conftest import RECIPES, run_cli
from datatools import demo_rows, write_broken_files, write_metadata

from hf_easyanimate.assembly import run
from hf_easyanimate.cli import main as cli_main
from hf_easyanimate.data.problems import REPORT_NAME, DataValidationError
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
FAST = ["--video_sample_size", "32", "--image_sample_size", "32", "--token_sample_size", "32",
        "--video_sample_n_frames", "5", "--per_device_train_batch_size", "11", "--max_steps", "-1",
        "--num_train_epochs", "1", "--save_steps", "1000", "--logging_steps", "10", "--report_to", "none"]


@pytest.fixture(scope="module")
def broken_metadata(demo_data, tmp_path_factory) -> tuple[str, str, dict[str, str]]:
    """50 good rows (the demo clips, repeated) and 5 broken ones. Every row claims 64x64 (nothing is probed, so
    the broken files are met while training) and the two buckets hold 44 videos and 11 images: batches of 11
    cover them without leftovers, so every broken row is read in the first epoch."""
    folder = str(tmp_path_factory.mktemp("broken-data"))
    demo_folder = os.path.dirname(demo_data)
    demo = [{**row, "file_path": os.path.join(demo_folder, row["file_path"]), "width": 64, "height": 64}
            for row in demo_rows(demo_data)]
    videos = [row for row in demo if row["type"] == "video"]
    images = [row for row in demo if row["type"] == "image"]
    rows = [videos[i % len(videos)] for i in range(40)] + [images[i % len(images)] for i in range(10)]
    broken = write_broken_files(folder)
    rows += [{"file_path": path, "text": f"broken: {kind}", "type": "image" if path.endswith(".png") else "video",
              "width": 64, "height": 64} for kind, path in broken.items()]
    return write_metadata(os.path.join(folder, "metadata.json"), rows), folder, broken


def test_broken_rows_are_skipped_and_reported_by_name(tiny_model_dir, broken_metadata, tmp_path):
    meta, folder, broken = broken_metadata
    out = str(tmp_path / "run")
    result = run_cli("train", DEMO, "--pretrained_model_name_or_path", tiny_model_dir, "--train_data_meta", meta,
                     "--train_data_dir", folder, "--output_dir", out, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(os.path.join(out, "adapter_model.safetensors"))
    report = json.load(open(os.path.join(out, REPORT_NAME)))
    assert report["bad_rows"] == 5
    assert {p["kind"]: os.path.relpath(p["file"], folder) for p in report["problems"]} == broken
    assert all(p["skips"] >= 1 for p in report["problems"])
    for path in broken.values():  # the end-of-training summary names every file
        assert path in result.stderr.split("5 bad file(s)/row(s) skipped")[-1]
    assert "5/5" in result.stderr  # one epoch: 4 video batches and 1 image batch of 11, all trained


def test_strict_data_fails_before_the_first_step(tiny_model_dir, broken_metadata, tmp_path):
    meta, folder, broken = broken_metadata
    out = str(tmp_path / "strict")
    model_args, data_args, args = parse_args([
        DEMO, "--pretrained_model_name_or_path", tiny_model_dir, "--train_data_meta", meta, "--train_data_dir",
        folder, "--output_dir", out, "--strict_data", "true", *FAST,
    ])
    with pytest.raises(DataValidationError) as error:
        run(model_args, data_args, args)
    assert len(error.value.problems) == 5
    for path in broken.values():
        assert path in str(error.value)
    assert not os.path.exists(out) or not any(name.startswith("checkpoint") for name in os.listdir(out))


def test_validate_data_prints_a_table_and_exits_1(broken_metadata, demo_data, capsys):
    meta, folder, broken = broken_metadata
    assert cli_main(["validate-data", "--train_data_meta", meta, "--train_data_dir", folder,
                     "--video_sample_stride", "2", "--video_sample_n_frames", "9"]) == 1
    printed = capsys.readouterr().out
    assert "55 rows" in printed and "5 problem(s)" in printed
    for kind, path in broken.items():
        assert any(kind in line and path in line for line in printed.splitlines())
    assert cli_main(["validate-data", "--train_data_meta", meta, "--train_data_dir", folder, "--json"]) == 1
    assert len(json.loads(capsys.readouterr().out)["problems"]) == 5
    assert cli_main(["validate-data", "--train_data_meta", demo_data, "--train_data_dir",
                     os.path.dirname(demo_data)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_buckets_json_lists_the_spec_frames_per_resolution(demo_data):
    result = run_cli("buckets", os.path.join(RECIPES, "v5.1", "inp_lora.yaml"), "--json",
                     "--train_data_meta", demo_data, "--train_data_dir", os.path.dirname(demo_data))
    assert result.returncode == 0, result.stderr[-2000:]
    plan = json.loads(result.stdout)
    settings = plan["settings"]
    assert (settings["video_sample_n_frames"], settings["token_sample_size"], settings["video_sample_size"],
            settings["image_sample_size"]) == (49, 512, 256, 1024)
    assert plan["frames_per_resolution"] == {"256": 49, "384": 49, "512": 49, "640": 29, "768": 21, "896": 17,
                                             "1024": 13}
    assert sum(b["samples"] for b in plan["buckets"]) == plan["samples"] == 12
    square = next(b for b in plan["buckets"] if b["type"] == "video" and b["ratio"] == "1.0")
    assert (square["height"], square["width"], square["frames"]) == (256, 256, 49)
    assert [(s["side"], s["height"], s["frames"]) for s in square["sizes"]][-1] == (1024, 1024, 13)
    image = next(b for b in plan["buckets"] if b["type"] == "image" and b["ratio"] == "1.0")
    assert (image["height"], image["width"], image["frames"]) == (1024, 1024, 1)
    assert [s["side"] for s in plan["image_sides"]] == [1024, 819.2, 682.67, 512, 256]


def test_resumed_run_replays_the_same_batches_with_any_worker_count(tiny_model_dir, demo_data, tmp_path, monkeypatch):
    """Checkpoint mid-epoch 1, resume with 2 dataloader workers: steps 9-10 see exactly the uninterrupted batches.

    Without buckets the 12 demo samples make 6 batches of 2 per epoch (4 video, 2 image), reshuffled each epoch.
    """
    from hf_easyanimate.trainers import EasyAnimateTrainer

    seen: list[tuple[int, list[int], tuple[int, ...]]] = []
    original = EasyAnimateTrainer._prepare_inputs

    def recording(self, inputs):
        seen.append((self.state.global_step, list(inputs["sample_index"]), tuple(inputs["pixel_values"].shape)))
        return original(self, inputs)

    monkeypatch.setattr(EasyAnimateTrainer, "_prepare_inputs", recording)
    out = str(tmp_path / "run")
    common = [DEMO, "--pretrained_model_name_or_path", tiny_model_dir, "--train_data_meta", demo_data,
              "--train_data_dir", os.path.dirname(demo_data), "--output_dir", out, "--max_steps", "10",
              "--save_steps", "8", "--logging_steps", "100", "--enable_bucket", "false", "--report_to", "none", "--video_sample_size", "32",
              "--image_sample_size", "32", "--video_sample_n_frames", "5", "--random_hw_adapt", "true"]
    run(*parse_args(common))
    uninterrupted = list(seen)
    assert len(uninterrupted) == 10
    assert [i for _, i, _ in uninterrupted[:4]] != [i for _, i, _ in uninterrupted[6:]]  # epoch 1 is reshuffled
    seen.clear()
    run(*parse_args([*common, "--resume_from_checkpoint", os.path.join(out, "checkpoint-8"),
                     "--dataloader_num_workers", "2"]))
    assert [(i, shape) for _, i, shape in seen] == [(i, shape) for _, i, shape in uninterrupted[8:]]
