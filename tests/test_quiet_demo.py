"""Quiet by default: the README demo (and a cached run) print no warning a user cannot act on.

Every line the commands print (stdout and stderr, progress-bar redraws split apart) is scanned; a line that looks
like a warning fails the test unless it matches the allow-list below, where each entry says why it may stay.
"""

from __future__ import annotations

import os
import re
import stat

from conftest import RECIPES, demo_overrides, run_cli

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
WARNING_LINE = re.compile(r"warn|deprecat|traceback|error|will be ignored|not expected", re.IGNORECASE)
ALLOWED = (
    # Our own data notes are INFO lines ("data: no bad samples were met" mentions no warning); nothing of a third
    # party is expected. Add an entry only with the reason the user can act on the line or must see it.
    re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO hf_easyanimate"),
)


def warning_lines(text: str) -> list[str]:
    lines = [line.strip() for chunk in text.split("\n") for line in chunk.split("\r")]
    return [line for line in lines if WARNING_LINE.search(line) and not any(rule.search(line) for rule in ALLOWED)]


def test_the_readme_demo_prints_no_warning(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "cpu_demo")
    result = run_cli("train", DEMO, *demo_overrides(tiny_model_dir, demo_data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert warning_lines(result.stdout + result.stderr) == []
    assert "written to" in result.stdout  # and it says what it wrote


def test_a_cached_run_prints_no_warning(tiny_model_dir, demo_data, tmp_path):
    cache, out = str(tmp_path / "cache"), str(tmp_path / "run")
    args = [DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--latent_cache_dir", cache, "--max_steps", "4"]
    precompute = run_cli("precompute", *args)
    assert precompute.returncode == 0, precompute.stderr[-3000:]
    train = run_cli("train", *args)
    assert train.returncode == 0, train.stderr[-3000:]
    assert warning_lines(precompute.stdout + precompute.stderr + train.stdout + train.stderr) == []
    umask = os.umask(0)
    os.umask(umask)
    shards = [os.path.join(folder, name) for folder, _, names in os.walk(cache) for name in names]
    assert shards and {stat.S_IMODE(os.stat(path).st_mode) for path in shards} == {0o666 & ~umask}


def test_the_scan_catches_third_party_warnings():
    sample = ("/x/peft/utils/save_and_load.py:313: UserWarning: Could not find a config file\n"
              "The config attributes {'x': 1} were passed to X, but are not expected\r[WARNING] [real_accelerator.py:213:get_accelerator] CPU\n"
              "2026-01-01 10:00:00,000 INFO hf_easyanimate: data: 12 samples\n")
    assert len(warning_lines(sample)) == 3
