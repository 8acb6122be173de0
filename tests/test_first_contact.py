"""A new user's first hour: help, one-line errors, outputs never lost, umask, right defaults, what was trained
and written, the validation schedule (issue 12). Graceful stop and the quiet demo have their own files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch
from conftest import RECIPES, REPO_ROOT, demo_overrides, run_cli

from hf_easyanimate.assembly import run
from hf_easyanimate.train import main
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


def demo_argv(model_dir, meta, out, *extra):
    return [DEMO, *demo_overrides(model_dir, meta, out), *extra]


# --- 1. help -----------------------------------------------------------------------------------------------------

SECTIONS = ("model and LoRA (ModelArguments):", "data (DataArguments):", "objective:", "memory:",
            "run: optimisation, checkpoints, validation, launch:",
            "transformers.TrainingArguments (Trainer's meaning and default):")


@pytest.mark.parametrize("command", [("train", "--help"), ("train", "-h"), ("precompute", "--help")])
def test_help_lists_every_flag_grouped_with_type_default_and_help(command):
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)  # ours first, in this order, then Trainer's
    assert "--learning_rate* FLOAT  (default: 0.0001)" in text and "Initial learning rate" in text
    assert "--enable_bucket [true|false]  (default: false)" in text
    assert "--save_strategy {no,steps,epoch,best}  (default: steps)" in text  # a TrainingArguments flag
    assert "--train_batch_size -> --per_device_train_batch_size" in text  # the original names
    assert "unknown key" not in result.stderr


def test_python_m_train_help_and_the_recipe_values(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    result = subprocess.run([sys.executable, "-m", "hf_easyanimate.train", DEMO, "--help"], capture_output=True,
                            text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m hf_easyanimate.train")
    assert "--learning_rate* FLOAT  (default: 0.0001; recipe: 2e-3)" in result.stdout


def test_help_never_prints_a_token(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("hub_token: hf_secretMARKER123\n")
    result = run_cli("train", str(recipe), "--help")
    assert result.returncode == 0 and "hf_secretMARKER123" not in result.stdout + result.stderr
    assert "--hub_token STR  (default: (none); recipe: <redacted>)" in result.stdout


def test_version_and_usage(tmp_path):
    from hf_easyanimate import __version__

    assert run_cli("--version").stdout.strip() == f"hf-easyanimate {__version__}"
    bare = run_cli("train")
    assert bare.returncode == 2 and bare.stderr.startswith("usage: hf-easyanimate train RECIPE.yaml")
    assert "Traceback" not in bare.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = run_cli("train", str(empty))
    assert result.returncode == 2 and f"recipe {empty} is empty: nothing to train" in result.stderr
    assert "Traceback" not in result.stderr
    typo = run_cli("trian")
    assert typo.returncode == 2 and "did you mean 'train'?" in typo.stderr


@pytest.mark.parametrize("command", ["sample", "make-tiny-model", "make-demo-data"])
def test_other_commands_show_their_defaults(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and result.stdout.count("(default:") >= 3, result.stdout


# --- 2. a bad value is one line ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("learning_rate", "abc", "expected a number (e.g. 1e-4)"),
    ("max_steps", "two", "expected an integer"),
    ("enable_bucket", "maybe", "expected true or false"),
    ("train_batch_size", "one", "expected an integer"),  # an original flag name
])
def test_a_bad_value_is_one_line_naming_flag_value_source_and_type(flag, value, expected, tmp_path, capsys):
    assert main([DEMO, f"--{flag}", value]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"hf-easyanimate: error: --{flag} {value!r} on the command line: {expected}"
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"output_dir: {tmp_path}\n{flag}: {value}\n")
    assert main([str(recipe)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"hf-easyanimate: error: {flag}: {value!r} in recipe {recipe}: {expected}"


def test_a_flag_missing_its_value_or_a_list_for_a_number_is_one_line(capsys):
    assert main([DEMO, "--learning_rate"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main([DEMO, "--learning_rate", "1", "2"]) == 2
    assert "got a list of 2 values" in capsys.readouterr().err


# --- 3. outputs are never silently lost --------------------------------------------------------------------------

def test_a_second_run_into_a_trained_folder_stops_before_loading_anything(tiny_model_dir, demo_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "2", "--save_steps", "1")))
    before = {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}
    # A model path that does not exist: the output check must come first, before anything is loaded.
    argv = demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "4", "--pretrained_model_name_or_path",
                     str(tmp_path / "no-such-model"))
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"--output_dir {out} already holds a training run (checkpoint-1, checkpoint-2, " in error
    assert "--resume_from_checkpoint latest" in error and "--overwrite_output_dir true" in error
    assert {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)} == before

    # --overwrite_output_dir true: the earlier run's checkpoints go, the new run's files replace them.
    trainer = run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "3", "--save_steps", "3",
                                        "--overwrite_output_dir", "true")))
    assert trainer.state.global_step == 3
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-3"]

    # Resuming a finished run says so instead of "training" zero steps.
    assert main(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "3", "--resume_from_checkpoint",
                          "latest")) == 0
    assert "checkpoint-3 is at max_steps 3: nothing to train; raise --max_steps" in capsys.readouterr().err


def test_clear_previous_run_removes_only_the_runs_files(tmp_path):
    from hf_easyanimate.training.outputs import clear_previous_run, previous_run

    out = tmp_path / "out"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "validation" / "step-10").mkdir(parents=True)
    (out / "runs").mkdir()
    for name in ("adapter_model.safetensors", "trainer_state.json", "notes.txt"):
        (out / name).write_text("x")
    assert previous_run(str(out)) == ["checkpoint-10", "adapter_model.safetensors", "trainer_state.json"]
    clear_previous_run(str(out))
    assert sorted(os.listdir(out)) == ["notes.txt", "runs"]  # the user's file and TensorBoard's runs/ stay


# --- 4. files follow the umask -----------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_written_file_gets_the_mode_open_would_give(umask, tiny_model_dir, demo_data, tmp_path):
    from hf_easyanimate.models.lora.files import export_lora

    out = str(tmp_path / "run")
    previous = os.umask(umask)
    try:
        run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "1", "--save_steps", "1")))
        export_lora(out, "easyanimate", str(tmp_path / "exported.safetensors"))
        export_lora(out, "peft", str(tmp_path / "exported_peft"))
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    modes = {}
    for folder, _, names in os.walk(tmp_path):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith((".safetensors", ".json", ".yaml", ".bin")) and ".probe-" not in name:
                modes[os.path.relpath(path, tmp_path)] = stat.S_IMODE(os.stat(path).st_mode)
    safetensors = [name for name in modes if name.endswith(".safetensors")]
    assert len(safetensors) >= 6  # adapter + EasyAnimate file at the top and in checkpoint-1, two exports
    assert {name: mode for name, mode in modes.items() if mode != expected} == {}


def test_atomic_writes_stay_atomic(tmp_path):
    from hf_easyanimate.utils.atomic import atomic_path

    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(str(target)) as temporary:
        open(temporary, "wb").write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.bin"]


# --- 6. right defaults -------------------------------------------------------------------------------------------

def test_loss_type_follows_the_checkpoint(tiny_model_dir, tiny_v5_model_dir, demo_data, tmp_path, caplog):
    from hf_easyanimate.assembly.preflight import resolve_loss_type

    for model, expected in ((tiny_model_dir, "flow"), (tiny_v5_model_dir, "ddpm")):
        model_args, _, args = parse_args(["--pretrained_model_name_or_path", model, "--output_dir", str(tmp_path),
                                          "--report_to", "none"])
        assert args.loss_type is None
        with caplog.at_level("INFO", logger="hf_easyanimate"):
            resolve_loss_type(model_args, args)
        assert args.loss_type == expected
        assert f"--loss_type {expected}: the checkpoint's objective" in caplog.text
    caplog.clear()
    model_args, _, args = parse_args(["--pretrained_model_name_or_path", tiny_model_dir, "--loss_type", "ddpm",
                                      "--output_dir", str(tmp_path), "--report_to", "none"])
    with caplog.at_level("WARNING", logger="hf_easyanimate"):
        resolve_loss_type(model_args, args)
    assert args.loss_type == "ddpm" and "(or pass --loss_type flow)" in caplog.text


def test_a_v51_line_without_loss_type_trains_flow(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    argv = [a for a in demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "2")]
    recipe = tmp_path / "no_loss.yaml"
    recipe.write_text("\n".join(line for line in open(DEMO).read().splitlines() if not line.startswith("loss_type")))
    argv[0] = str(recipe)
    trainer = run(*parse_args(argv))
    assert trainer.args.loss_type == "flow" and trainer.state.global_step == 2


def test_missing_data_flags_are_reported_first(tiny_model_dir, tmp_path, capsys):
    # --loss_type sigma would fail on this model; the missing metadata is reported before any model check.
    assert main(["--pretrained_model_name_or_path", tiny_model_dir, "--loss_type", "sigma", "--output_dir",
                 str(tmp_path / "o"), "--report_to", "none"]) == 2
    assert capsys.readouterr().err.strip() == (
        "hf-easyanimate: error: missing required flag(s): --train_data_meta (the metadata file listing your clips)")


# --- 7. the seed's --mixed_precision bf16 on a machine without a GPU ---------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
@pytest.mark.parametrize("spelling", [["--mixed_precision", "bf16"], ["--mixed_precision=bf16"]])
def test_bf16_without_a_gpu_trains_with_bf16_autocast_on_cpu(spelling, tiny_model_dir, demo_data, tmp_path, caplog):
    out = str(tmp_path / "run")
    model_args, data_args, args = parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "1",
                                                       *spelling))
    assert args.bf16 and args.use_cpu
    assert args.launch_notes == ["no GPU: training on the CPU with bf16 autocast (--mixed_precision bf16)."]
    with caplog.at_level("INFO", logger="hf_easyanimate"):
        trainer = run(model_args, data_args, args)
    assert "bf16 autocast" in caplog.text and trainer.state.global_step == 1


def test_accelerate_cpu_with_several_processes_is_named(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with caplog.at_level("WARNING"):
        parse_args(["--output_dir", str(tmp_path), "--report_to", "none"])
    assert "started a single process" in caplog.text and "torchrun --nproc_per_node N" in caplog.text


# --- 8. clear errors instead of tracebacks -----------------------------------------------------------------------

def test_output_dir_problems_are_named(tiny_model_dir, demo_data, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(demo_argv(tiny_model_dir, demo_data, str(afile))) == 2
    assert f"--output_dir {afile} is a file, not a folder" in capsys.readouterr().err

    import errno
    import tempfile

    from hf_easyanimate.training.outputs import OutputDirError, check_writable

    for error, message in ((OSError(errno.EROFS, "Read-only file system"), "is on a read-only filesystem"),
                           (PermissionError(errno.EACCES, "Permission denied"), "is not writable (permission denied)")):
        def refuse(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
        with pytest.raises(OutputDirError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_writable(str(tmp_path / "out"))


def test_data_and_model_path_mistakes_are_named(tiny_model_dir, demo_data, tmp_path, capsys):
    out = str(tmp_path / "o")
    cases = [
        (["--train_data_dir", str(tmp_path / "nope")], f"--train_data_dir {tmp_path / 'nope'} does not exist"),
        (["--train_data_meta", str(tmp_path / "meta.json")], f"--train_data_meta {tmp_path / 'meta.json'} does not exist"),
        (["--pretrained_model_name_or_path", "./no-model"], "--pretrained_model_name_or_path ./no-model does not exist"),
        (["--pretrained_model_name_or_path", str(tmp_path)], f"{tmp_path} has no transformer/ folder"),
        (["--pretrained_model_name_or_path", "someone/not-cached-model"],
         "someone/not-cached-model is a Hub id, HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face cache"),
    ]
    for extra, message in cases:
        code = main(demo_argv(tiny_model_dir, demo_data, out, *extra))
        error = capsys.readouterr().err
        assert code in (1, 2) and message in error and "Traceback" not in error, (extra, error)


def test_export_lora_refuses_to_overwrite_and_names_non_lora_files(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "1")))
    target = tmp_path / "lora.safetensors"
    first = run_cli("export-lora", out, "--to", "easyanimate", str(target))
    assert first.returncode == 0 and f"wrote {target}" in first.stdout
    again = run_cli("export-lora", out, "--to", "easyanimate", str(target))
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert run_cli("export-lora", out, "--to", "easyanimate", str(target), "--overwrite").returncode == 0
    weights = os.path.join(tiny_model_dir, "transformer", "diffusion_pytorch_model.safetensors")
    full = run_cli("export-lora", weights, "--to", "peft", str(tmp_path / "p"))
    assert full.returncode == 2 and f"{weights}: no LoRA keys in it" in full.stderr


# --- 9. say what is trained --------------------------------------------------------------------------------------

def test_start_line_and_never_trained_warning(tiny_model_dir, demo_data, tmp_path, caplog):
    out = str(tmp_path / "run")
    with caplog.at_level("INFO", logger="hf_easyanimate"):
        run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "1", "--bucket_remainder", "drop")))
    assert ("data: 12 samples in 9 bucket(s): 3 batch(es) of 2 per epoch per process (1 process(es), "
            "--bucket_remainder drop); 6 sample(s) left in incomplete buckets each epoch") in caplog.text
    assert "data: 6 sample(s) are never trained: they sit in 6 bucket(s)" in caplog.text
    assert "--bucket_remainder fill" in caplog.text


def test_bucket_remainder_fill_trains_every_sample_every_epoch():
    import numpy as np

    from hf_easyanimate.data.sampler import epoch_batches

    buckets = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 3])  # sizes 3, 1, 5, 1 with batch 2
    for epoch in range(3):
        drop = epoch_batches(buckets, 2, seed=1, epoch=epoch)
        fill = epoch_batches(buckets, 2, seed=1, epoch=epoch, remainder="fill")
        assert len(drop) == 3 and len(fill) == 7  # 1 + 0 + 2 + 0 full, then one topped-up batch per bucket
        assert all(len(batch) == 2 and len(set(buckets[batch])) == 1 for batch in fill)
        assert set(np.concatenate(fill)) == set(range(10))
        assert {int(i) for i in np.concatenate(drop)} != set(range(10))  # 1 and 9 are alone: never in drop


# --- 10. quiet: FFmpeg's lines go into the problem report, not raw into the log ---------------------------------

def test_ffmpeg_lines_of_a_broken_clip_go_into_its_problem_not_stderr(tmp_path, capfd):
    from hf_easyanimate.data.video import SampleReadError, open_video

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not an mp4 at all" * 10)
    with pytest.raises(SampleReadError) as error:
        open_video(str(broken))
    printed = capfd.readouterr()
    assert printed.err == "" and printed.out == ""
    assert "moov atom not found" in str(error.value) and "ERROR opening" in str(error.value)
    assert "/github/workspace" not in str(error.value)  # decord's source-file prefix is cut


def test_validate_data_reports_ffmpeg_detail_without_raw_lines(demo_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(demo_data), data)
    (data / "videos" / "clip_000.mp4").write_bytes(b"\x00garbage" * 50)
    result = run_cli("validate-data", "--train_data_meta", str(data / "metadata.json"), "--train_data_dir", str(data))
    assert result.returncode == 1
    assert "clip_000.mp4" in result.stdout and "moov atom not found" in result.stdout
    assert "[mov,mp4" not in result.stderr and "ERROR opening" not in result.stderr


# --- 11. say what was written ------------------------------------------------------------------------------------

def test_training_ends_with_the_files_formats_rank_and_alpha(tiny_model_dir, demo_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(demo_argv(tiny_model_dir, demo_data, out, "--max_steps", "2", "--save_steps", "2")) == 0
    printed = capsys.readouterr().out
    assert f"LoRA (rank 8, alpha 8) written to {out}:" in printed
    assert f"peft adapter (diffusers, load_lora_into_pipeline): {out}/adapter_model.safetensors" in printed
    assert f"EasyAnimate / ComfyUI file: {out}/easyanimate_lora.safetensors" in printed
    assert "checkpoints: checkpoint-2 (resumable with --resume_from_checkpoint latest)" in printed


def test_sample_defaults_come_from_the_training_recipe(tmp_path):
    from hf_easyanimate.inference import trained_size

    (tmp_path / "training_recipe.yaml").write_text("video_sample_size: 256\nvideo_sample_n_frames: 50\n")
    (tmp_path / "easyanimate_lora.safetensors").write_bytes(b"")
    size, source = trained_size(str(tmp_path / "easyanimate_lora.safetensors"))
    assert size == {"num_frames": 49, "height": 256, "width": 256} and source == str(tmp_path / "training_recipe.yaml")
    (tmp_path / "training_recipe.yaml").write_text("rank: 8\n")  # sizes at their defaults: not written
    assert trained_size(str(tmp_path))[0] == {"num_frames": 17, "height": 512, "width": 512}
    assert trained_size(str(tmp_path / "elsewhere")) == ({}, None)


# --- 12. validation schedule -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "schedule"), [
    ([], (2000, 5)),
    (["--validation_steps", "20"], (20, None)),
    (["--validation_epochs", "3"], (None, 3)),
    (["--validation_steps", "20", "--validation_epochs", "3"], (20, 3)),
])
def test_either_validation_schedule_alone_is_the_only_one(flags, schedule, tmp_path):
    _, _, args = parse_args(["--output_dir", str(tmp_path), "--report_to", "none", *flags])
    assert (args.validation_steps, args.validation_epochs) == schedule


def test_steps_only_schedule_validates_at_those_steps_only(monkeypatch):
    from types import SimpleNamespace

    from hf_easyanimate.training.validation import ValidationCallback

    seen = []
    callback = ValidationCallback(sampler=None, every_steps=20, every_epochs=None)
    monkeypatch.setattr(callback, "validate", lambda args, state, model: seen.append(state.global_step))
    for step in range(1, 61):
        state = SimpleNamespace(global_step=step, epoch=step / 6)
        callback.on_step_end(None, state, None)
        if step % 6 == 0:
            callback.on_epoch_end(None, state, None)
    assert seen == [20, 40, 60]  # not also every 5 epochs


def test_report_runs_after_the_plain_install_and_sheets_are_readable():
    import importlib.util

    import numpy as np

    from hf_easyanimate.utils.media import contact_sheet

    assert importlib.util.find_spec("matplotlib") is not None  # a core dependency now
    requirements = open(os.path.join(REPO_ROOT, "setup.cfg")).read().split("[options.extras_require]")[0]
    assert "matplotlib" in requirements
    sheet = contact_sheet([np.zeros((9, 64, 48, 3), np.uint8)], ["a prompt"])
    assert sheet.shape == (22 + 64 * 6, 8 * 48 * 6 + 7 * 2, 3)  # 48 px frames x6 -> 288 px; 22 px caption


@pytest.mark.distributed
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks launches on a machine without a GPU")
@pytest.mark.parametrize("launcher", [
    ["--cpu", "--mixed_precision", "bf16"],
    ["--config_file", os.path.join(RECIPES, "accelerate", "multi_gpu.yaml"), "--num_processes", "2"],
])
def test_accelerate_launch_on_a_cpu_machine_trains(launcher, tiny_model_dir, demo_data, tmp_path):
    from test_seed_commands import free_port

    out = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--main_process_port",
               str(free_port()), "-m", "hf_easyanimate.train", *demo_argv(tiny_model_dir, demo_data, out),
               "--max_steps", "2", "--per_device_train_batch_size", "1"]
    result = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    args = torch.load(os.path.join(out, "training_args.bin"), weights_only=False)
    world = 2 if "--num_processes" in launcher else 1
    assert args.bf16 and args.use_cpu and args.world_size == world  # multi_gpu.yaml says bf16 too
