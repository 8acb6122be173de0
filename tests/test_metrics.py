"""Which checkpoint is best (issue 16): the evaluate metrics, their values during training, report and compare."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import RECIPES, REPO_ROOT, demo_overrides, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_easyanimate.assembly import run
from hf_easyanimate.metrics import load_metric, module_path
from hf_easyanimate.metrics.clip import ClipEmbedder, clip_metrics
from hf_easyanimate.train import main
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
PROMPTS = ["a red square moving left on a blue background", "a green disc on a white background"]


def videos(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames, 40, 56, 3), dtype=np.uint8) for frames in (5, 3)]


# --- the metrics against a hand computation -----------------------------------------------------------------------

def test_clip_metrics_equal_a_hand_computation_with_clipmodel(tiny_clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    clips = videos()
    ours = clip_metrics(ClipEmbedder.load(tiny_clip_dir), clips, PROMPTS)

    model, processor = CLIPModel.from_pretrained(tiny_clip_dir).eval(), CLIPProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        texts = model.get_text_features(**processor(text=PROMPTS, return_tensors="pt", padding=True))
        texts = getattr(texts, "pooler_output", texts)
        alignment, consistency = [], []
        for clip, text in zip(clips, texts):
            frames = model.get_image_features(**processor(images=list(clip), return_tensors="pt"))
            frames = getattr(frames, "pooler_output", frames)
            frames = frames / frames.norm(dim=-1, keepdim=True)
            alignment.append((frames @ (text / text.norm())).mean().item())
            consistency.append((frames[1:] * frames[:-1]).sum(-1).mean().item())
    assert ours["text_alignment"] == pytest.approx(np.mean(alignment), abs=1e-5)
    assert ours["temporal_consistency"] == pytest.approx(np.mean(consistency), abs=1e-5)


def test_the_modules_load_by_path_offline_in_a_fresh_cache(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "PYTHONPATH": REPO_ROOT}
    code = ("import evaluate; from hf_easyanimate.metrics import module_path as p; "
            "print(evaluate.load(p('temporal_consistency')).compute(frame_embeds=[[[1, 0], [1, 0]]]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'temporal_consistency': 1.0" in result.stdout
    assert all(os.path.isfile(module_path(name)) for name in ("text_alignment", "eval_loss_bands"))


class ColourEmbedder:
    """A 'CLIP' whose embeddings are constructed: a frame embeds as its mean colour, a prompt as its colour word."""

    COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    def embed_frames(self, frames):
        means = np.asarray(frames, dtype=np.float64).mean(axis=(1, 2)) + 1e-3
        return means / np.linalg.norm(means, axis=-1, keepdims=True)

    def embed_texts(self, prompts):
        return np.array([next(v for k, v in self.COLOURS.items() if k in p.split()[:2]) for p in prompts])


def test_text_alignment_ranks_a_clip_of_its_own_prompt_first():
    red = np.zeros((4, 8, 8, 3), np.uint8)
    red[..., 0] = 200
    embedder = ColourEmbedder()
    own = clip_metrics(embedder, [red], ["a red square"])["text_alignment"]
    other = clip_metrics(embedder, [red], ["a green square"])["text_alignment"]
    assert own > 0.99 and other < 0.01 and own > other
    pair = load_metric("text_alignment").compute(frame_embeds=[embedder.embed_frames(red).tolist()] * 2,
                                                 text_embeds=embedder.embed_texts(["a red x", "a blue x"]).tolist())
    assert pair["per_clip"][0] > pair["per_clip"][1]


def test_eval_loss_bands_by_noise_third():
    bands = load_metric("eval_loss_bands").compute(losses=[1.0, 2.0, 3.0, 5.0, 7.0],
                                                   noise_levels=[0.1, 0.2, 0.5, 0.66, 0.9])
    assert bands == {"eval_loss_low_noise": 1.5, "eval_loss_mid_noise": 4.0, "eval_loss_high_noise": 7.0}
    assert "eval_loss_mid_noise" not in load_metric("eval_loss_bands").compute(losses=[1.0, 2.0],
                                                                                 noise_levels=[0.25, 0.75])


def test_noise_level_follows_each_objective(tiny_model_dir):
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    from hf_easyanimate.objectives import DDPMObjective, FlowMatchingObjective

    grid = torch.tensor([125, 875])
    flow = FlowMatchingObjective(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000))
    ddpm = DDPMObjective(DDPMScheduler(num_train_timesteps=1000))
    assert flow.noise_level(grid).tolist() == pytest.approx([0.875, 0.125], abs=2e-3)  # flow's grid runs from noise
    assert ddpm.noise_level(grid).tolist() == pytest.approx([0.125, 0.875])


# --- during training, report, model card, compare -----------------------------------------------------------------

@pytest.fixture(scope="module")
def scored_run(tiny_model_dir, demo_data, tiny_clip_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scored") / "run")
    argv = [DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--max_steps", "6", "--save_steps", "2",
            "--logging_steps", "1", "--video_sample_n_frames", "5", "--report_to", "tensorboard", "--save_total_limit", "5",
            "--validation_prompts", *PROMPTS, "--validation_steps", "2", "--validation_num_inference_steps", "2",
            "--validation_num_frames", "5", "--validation_clip_model", tiny_clip_dir,
            "--eval_data_meta", demo_data, "--max_eval_samples", "4", "--eval_strategy", "steps", "--eval_steps", "2"]
    trainer = run(*parse_args(argv))
    return out, trainer


def test_each_validation_step_writes_metrics_and_logs_them(scored_run):
    out, trainer = scored_run
    for step in (2, 4, 6):
        with open(os.path.join(out, "validation", f"step-{step}", "metrics.json"), encoding="utf-8") as handle:
            metrics = json.load(handle)
        assert metrics["step"] == step and len(metrics["per_prompt"]) == 2
        assert -1 <= metrics["text_alignment"] <= 1 and -1 <= metrics["temporal_consistency"] <= 1
        assert metrics["text_alignment"] == pytest.approx(np.mean([p["text_alignment"] for p in metrics["per_prompt"]]))
    history = trainer.state.log_history
    assert [e["step"] for e in history if "text_alignment" in e] == [2, 4, 6]
    evals = [e for e in history if "eval_loss" in e]
    assert len(evals) == 3 and all({"eval_loss_low_noise", "eval_loss_mid_noise", "eval_loss_high_noise"} <= set(e)
                                   for e in evals)
    # The bands average to the overall eval loss (4 grid timesteps per batch: 1 low, 2 mid, 1 high).
    for e in evals:
        assert e["eval_loss"] == pytest.approx(
            (e["eval_loss_low_noise"] + 2 * e["eval_loss_mid_noise"] + e["eval_loss_high_noise"]) / 4, rel=1e-5)
    runs = os.path.join(out, "runs")
    events = EventAccumulator(os.path.join(runs, os.listdir(runs)[0])).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"validation/text_alignment", "validation/temporal_consistency", "eval/loss_low_noise",
            "eval/loss_mid_noise", "eval/loss_high_noise"} <= tags
    assert [s.step for s in events.Scalars("validation/text_alignment")] == [2, 4, 6]


def test_eval_loss_weights_every_eval_batch_by_its_size(scored_run, monkeypatch):
    # Trainer repeats each batch's loss by a fixed batch size and cuts to the sample count: with 4 one-clip
    # buckets and --per_device_eval_batch_size 8 it kept the first batch only. Every batch counts here.
    _, trainer = scored_run
    seen = []
    original = type(trainer).prediction_step

    def recording(self, model, inputs, *args, **kwargs):
        loss, logits, labels = original(self, model, inputs, *args, **kwargs)
        seen.append((loss.item(), inputs["pixel_values"].shape[0]))
        return loss, logits, labels

    monkeypatch.setattr(type(trainer), "prediction_step", recording)
    metrics = trainer.evaluate()
    assert len(seen) >= 2 and len({round(loss, 6) for loss, _ in seen}) > 1
    expected = sum(loss * size for loss, size in seen) / sum(size for _, size in seen)
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-6)
    assert metrics["eval_loss"] != pytest.approx(seen[0][0], rel=1e-6)  # not just the first batch


def test_report_plots_the_metric_curves_and_the_card_lists_final_values(scored_run):
    from hf_easyanimate.training.hub import model_card_text
    from hf_easyanimate.training.report import metric_curves, render

    out, trainer = scored_run
    paths = render(out)
    curves = metric_curves(trainer.state.log_history)
    assert set(curves) == {"text_alignment", "temporal_consistency", "eval_loss_low_noise", "eval_loss_mid_noise",
                           "eval_loss_high_noise"}
    from PIL import Image

    assert Image.open(paths.loss_plot).size == (1400, 450)  # loss on the left, the metrics beside it
    card = model_card_text(trainer.card_facts())
    final = [e for e in trainer.state.log_history if "text_alignment" in e][-1]
    assert f"| text_alignment | 6 | {final['text_alignment']:.4f} |" in card
    assert "| eval_loss_high_noise | 6 |" in card


def test_compare_writes_grid_and_table_names_the_best_and_reuses_clips(scored_run, tiny_clip_dir, tmp_path):
    out, _ = scored_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(out, run_dir)
    command = ["compare", run_dir, "--prompts", *PROMPTS, "--clip_model", tiny_clip_dir, "--steps", "2"]
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    with open(os.path.join(run_dir, "compare", "compare.json"), encoding="utf-8") as handle:
        result = json.load(handle)
    names = [row["name"] for row in result["rows"]]
    assert names == ["base", "checkpoint-2", "checkpoint-4", "checkpoint-6"]
    scores = {row["name"]: row["text_alignment"] for row in result["rows"]}
    assert result["best"] == max(("checkpoint-2", "checkpoint-4", "checkpoint-6"), key=scores.get)
    assert f"best by text_alignment: {result['best']}" in first.stdout
    assert "checkpoint-4" in first.stdout and "temporal_consistency" in first.stdout
    from PIL import Image

    grid = Image.open(os.path.join(run_dir, "compare", "compare_grid.png"))
    assert grid.size[1] > 4 * 256  # four rows of frames enlarged to at least 256 px
    clip = os.path.join(run_dir, "compare", "checkpoint-4", "prompt-01.mp4")
    written = os.path.getmtime(clip)

    # A rerun reuses the clips; a checkpoint that fails to load is reported and the others still compared.
    with open(os.path.join(run_dir, "checkpoint-6", "adapter_model.safetensors"), "wb") as handle:
        handle.write(b"torn by a crash")
    shutil.rmtree(os.path.join(run_dir, "compare", "checkpoint-6"))
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert os.path.getmtime(clip) == written
    with open(os.path.join(run_dir, "compare", "compare.json"), encoding="utf-8") as handle:
        rerun = json.load(handle)
    failed = {row["name"]: row["error"] for row in rerun["rows"] if row["error"]}
    assert list(failed) == ["checkpoint-6"] and "checkpoint-6" in again.stdout and "failed" in again.stdout
    assert {row["name"]: row["text_alignment"] for row in rerun["rows"] if not row["error"]} == {
        k: v for k, v in scores.items() if k != "checkpoint-6"}


def test_compare_on_a_folder_without_checkpoints_says_what_it_looked_for(tmp_path):
    result = run_cli("compare", str(tmp_path), "--prompts", "x")
    assert result.returncode == 2
    assert "no checkpoint-N folders and no LoRA (adapter_model.safetensors or easyanimate_lora.safetensors)" \
        in result.stderr


def test_an_unloadable_clip_model_fails_before_training(tiny_model_dir, demo_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    for clip, message in ((str(tmp_path / "no-clip"), "no CLIP model there (no config.json)"),
                          ("someone/not-a-cached-clip", "HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face")):
        code = main([DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--validation_prompts", "x",
                     "--validation_clip_model", clip])
        error = capsys.readouterr().err
        assert code == 2 and f"--validation_clip_model {clip}" in error and message in error
        assert not os.path.exists(os.path.join(out, "checkpoint-1"))


def test_no_clip_is_loaded_without_validation(monkeypatch, tiny_model_dir, demo_data, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the CLIP model must not load without --validation_prompts")

    monkeypatch.setattr(ClipEmbedder, "load", refuse)
    run(*parse_args([DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "r")), "--max_steps", "1"]))
