"""Shared fixtures: tiny EasyAnimate repos and demo clip sets, generated once per test session."""

from __future__ import annotations

import os
import subprocess
import sys

# Tests never touch the network: every model and clip is generated locally. Set before huggingface_hub is
# imported: it reads HF_HUB_OFFLINE once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from huggingface_hub.hf_api import RepoUrl  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO_ROOT, "recipes")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from hf_easyanimate.testing import make_tiny_model

    return make_tiny_model(str(tmp_path_factory.mktemp("tiny-v5.1")), version="v5.1")


@pytest.fixture(scope="session")
def tiny_inpaint_model_dir(tmp_path_factory) -> str:
    from hf_easyanimate.testing import make_tiny_model

    return make_tiny_model(str(tmp_path_factory.mktemp("tiny-v5.1-inp")), version="v5.1", inpaint=True)


@pytest.fixture(scope="session")
def tiny_v5_model_dir(tmp_path_factory) -> str:
    """The V5 layout: BERT + T5 text encoders, DDIM scheduler, transformer weights with original key names."""
    from hf_easyanimate.testing import make_tiny_model

    return make_tiny_model(str(tmp_path_factory.mktemp("tiny-v5")), version="v5")


@pytest.fixture(scope="session")
def tiny_v5_inpaint_model_dir(tmp_path_factory) -> str:
    from hf_easyanimate.testing import make_tiny_model

    return make_tiny_model(str(tmp_path_factory.mktemp("tiny-v5-inp")), version="v5", inpaint=True)


@pytest.fixture(scope="session")
def tiny_legacy_dirs(tmp_path_factory):
    """Tiny V4 / V3 / V2 repos in their Hub layouts, written on first use: ``tiny_legacy_dirs("v4-inp")``."""
    from hf_easyanimate.testing import make_tiny_model

    made: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in made:
            version, _, variant = name.partition("-")
            made[name] = make_tiny_model(str(tmp_path_factory.mktemp(f"tiny-{name}")), version=version,
                                         inpaint=variant == "inp")
        return made[name]

    return get


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    """A tiny random CLIP (model + processor) for the validation metrics."""
    from hf_easyanimate.testing import make_tiny_clip

    return make_tiny_clip(str(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="session")
def short_demo_data(tmp_path_factory) -> str:
    """Demo data with 9-12 frame clips: for the seed lines, which ask for 49 or 144 frames at 512 px and so train
    at each clip's full length (the frame count does not change what those tests check: the flags and files)."""
    from hf_easyanimate.testing import make_demo_data

    return make_demo_data(str(tmp_path_factory.mktemp("short-demo-data")), videos=4, images=2, frame_range=(9, 12))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> str:
    """Path of the demo ``metadata.json`` (8 clips, 4 images); files sit beside it."""
    from hf_easyanimate.testing import make_demo_data

    return make_demo_data(str(tmp_path_factory.mktemp("demo-data")), videos=8, images=4)


def run_cli(*args: str, cwd: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``hf-easyanimate ARGS`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "hf_easyanimate.cli", *args],
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )


def demo_overrides(model_dir: str, meta_path: str, output_dir: str) -> list[str]:
    """Command-line overrides pointing the tiny demo recipe at session fixtures."""
    return [
        "--pretrained_model_name_or_path", model_dir,
        "--train_data_dir", os.path.dirname(meta_path),
        "--train_data_meta", meta_path,
        "--output_dir", output_dir,
    ]


@pytest.fixture
def hub_recorder(monkeypatch):
    """Record create_repo / create_commit calls (with the token each got) instead of talking to the Hub."""
    calls = {"repos": [], "commits": [], "tokens": []}

    def create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        calls["repos"].append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        calls["tokens"].append(token)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, token=None, revision=None, **kwargs):
        files = {}
        for operation in operations:
            with open(operation.path_or_fileobj, "rb") as handle:
                content = handle.read()
            assert len(content) == operation.upload_info.size
            files[operation.path_in_repo] = {"size": operation.upload_info.size, "content": content}
        calls["commits"].append({"repo_id": repo_id, "message": commit_message, "files": files})
        calls["tokens"].append(token)
        return {"commit_message": commit_message}

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls
