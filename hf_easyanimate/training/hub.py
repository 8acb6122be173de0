"""What a trained LoRA ships with: its recipe, its model card, and a Hub push of exactly those files.

The push goes through ``huggingface_hub``'s ``create_commit`` with an explicit file list (never a folder glob), so
nothing but the adapter files, configs and the model card can leave the machine; the 12B base weights are never
in the list. Sizes are logged before the upload starts.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from ..models.lora.files import EASYANIMATE_LORA_NAME, PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME, RECIPE_NAME
from ..utils.secrets import is_secret

logger = logging.getLogger(__name__)

MODEL_CARD_NAME = "README.md"
# Everything a LoRA repo on the Hub holds, by --save_lora_format.
LORA_FILES = {"peft": (PEFT_WEIGHTS_NAME, PEFT_CONFIG_NAME), "easyanimate": (EASYANIMATE_LORA_NAME,)}
HUB_FILES = (*LORA_FILES["peft"], *LORA_FILES["easyanimate"], RECIPE_NAME, MODEL_CARD_NAME)
# Trainer's resume state, pushed only inside checkpoint folders with --hub_strategy checkpoint|all_checkpoints,
# whose purpose is resuming from the Hub. It is LoRA-sized (Adam moments of the adapter), never base weights.
RESUME_STATE_PREFIXES = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state")
# Fields derived by TrainingArguments.__post_init__: not part of a recipe (secrets never are either).
NOT_RECIPE_FIELDS = {
    "accelerator_config", "debug", "activation_checkpointing", "gradient_checkpointing",
    "disable_tqdm", "logging_dir", "local_rank",
}


# --- recipe --------------------------------------------------------------------------------------------------

def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # Trainer's str enums (HubStrategy, SchedulerType, ...)
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def effective_recipe(*argument_objects: Any) -> dict[str, Any]:
    """The recipe that reproduces a run: every field (of the argument dataclasses) that differs from its default.

    ``hf-easyanimate train training_recipe.yaml`` reruns it; tokens and values Trainer derives are left out.
    """
    recipe: dict[str, Any] = {}
    for arguments in argument_objects:
        if arguments is None:
            continue
        for field in dataclasses.fields(arguments):
            if not field.init or field.name in NOT_RECIPE_FIELDS or is_secret(field.name):
                continue
            value, default = _plain(getattr(arguments, field.name)), _plain(_default(field))
            if value == default or (field.name == "report_to" and value in ([], ["none"]) and default == "none"):
                continue
            recipe[field.name] = value
    if recipe.get("report_to") == []:
        recipe["report_to"] = "none"
    return recipe


def recipe_yaml(recipe: dict[str, Any]) -> str:
    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False)


# --- model card ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CardFacts:
    """What the model card says about a training run."""

    base_model: str | None
    image_to_video: bool
    dataset_size: int | None
    steps: int
    epochs: float | None
    losses: list[tuple[int, float]]  # (step, loss) as logged
    recipe: dict[str, Any]
    rank: int | None = None
    alpha: float | None = None
    repo_id: str | None = None
    metrics: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)  # key -> (step, last value)
    pipeline: str | None = None  # the diffusers pipeline class to load it into (default: the newest family's)


def final_metrics(log_history: Iterable[dict]) -> dict[str, tuple[int, float]]:
    """The last logged value (and its step) of each validation metric and of the eval loss."""
    from ..metrics import BAND_KEYS, CLIP_METRICS

    found: dict[str, tuple[int, float]] = {}
    for entry in log_history:
        for key in ("eval_loss", *BAND_KEYS, *CLIP_METRICS):
            if key in entry and "step" in entry:
                found[key] = (int(entry["step"]), float(entry[key]))
    return found


def loss_curve_points(log_history: Iterable[dict], points: int = 10) -> list[tuple[int, float]]:
    """Up to ``points`` (step, loss) pairs spread over the run, first and last included."""
    curve = [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]
    if len(curve) <= points:
        return curve
    indices = sorted({round(i * (len(curve) - 1) / (points - 1)) for i in range(points)})
    return [curve[i] for i in indices]


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name) and name.count("/") == 1 and not name.startswith((".", "/"))


def _usage_lines(facts: CardFacts, pipeline_class: str, base: str, repo: str) -> list[str]:
    """How to load the LoRA: diffusers code, the command line, ComfyUI."""
    size = "num_frames=49, height=512, width=512"
    if facts.image_to_video:
        call = [
            'video, mask_video = first_frame_conditioning("first_frame.png", num_frames=49, height=512, width=512)',
            f'frames = pipe("your prompt", negative_prompt="", {size}, video=video, mask_video=mask_video).frames[0]',
        ]
    else:
        call = [f'frames = pipe("your prompt", negative_prompt="", {size}).frames[0]']
    return [
        "## Use it with diffusers",
        "",
        "```python",
        "import torch",
        f"from diffusers import {pipeline_class}",
        "from diffusers.utils import export_to_video",
        "from hf_easyanimate import load_lora_into_pipeline",
        *(["from hf_easyanimate.inference import first_frame_conditioning"] if facts.image_to_video else []),
        "",
        f'pipe = {pipeline_class}.from_pretrained("{base}", torch_dtype=torch.bfloat16).to("cuda")',
        f'load_lora_into_pipeline(pipe, "{repo}", scale=1.0)  # Hub repo id, local folder or file',
        *call,
        'export_to_video(frames, "clip.mp4", fps=8)',
        "```",
        "",
        "or from the command line: `hf-easyanimate sample --model BASE --lora THIS_FOLDER --prompt \"...\" "
        + ("--image first_frame.png " if facts.image_to_video else "") + "--out clip.mp4`.",
        "",
        "## Use it in ComfyUI",
        "",
        f"Copy `{EASYANIMATE_LORA_NAME}` into `ComfyUI/models/loras/`, then in EasyAnimate's ComfyUI workflow put a "
        "**Load EasyAnimate Lora** node between the model loader and the sampler and pick the file "
        "(`strength_model` 1.0 is the trained strength).",
        "",
    ]


def _metric_lines(facts: CardFacts) -> list[str]:
    """The final validation metrics, when the run computed any."""
    if not facts.metrics:
        return []
    return [
        "## Final validation metrics",
        "",
        "| metric | step | value |",
        "|---|---|---|",
        *[f"| {key} | {step} | {value:.4f} |" for key, (step, value) in facts.metrics.items()],
        "",
        "text_alignment: CLIP cosine similarity of the validation clips' frames to their prompts; "
        "temporal_consistency: of consecutive frames (higher is better); eval_loss*: the deterministic eval loss, "
        "overall and by noise third (lower is better).",
        "",
    ]


def model_card_text(facts: CardFacts) -> str:
    """README.md for the LoRA repo: metadata header, what was trained on what, and how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..models.family import families

    task = "image-to-video" if facts.image_to_video else "text-to-video"
    data = ModelCardData(
        base_model=facts.base_model if _is_hub_id(facts.base_model) else None,
        library_name="diffusers",
        pipeline_tag=task,
        tags=["lora", "easyanimate", task, "diffusers", "peft", "hf_easyanimate"],
    )
    pipeline_class = facts.pipeline or families()[0].pipeline_names[int(facts.image_to_video)]
    base = facts.base_model or "the EasyAnimate base model"
    curve = "\n".join(f"| {step} | {loss:.4f} |" for step, loss in facts.losses) or "| - | - |"
    shape = f"rank {facts.rank}, alpha {facts.alpha:g}" if facts.rank and facts.alpha else ""
    lines = [
        f"# EasyAnimate LoRA ({task})",
        "",
        f"A LoRA ({shape}) for `{base}`, trained with hf_easyanimate (EasyAnimate's LoRA recipe on "
        f"`transformers.Trainer`): {facts.steps} optimisation steps"
        + (f" ({facts.epochs:g} epochs)" if facts.epochs else "")
        + (f" on {facts.dataset_size} training samples." if facts.dataset_size is not None else "."),
        "",
        "## Files",
        "",
        "| file | for |",
        "|---|---|",
        f"| `{PEFT_WEIGHTS_NAME}`, `{PEFT_CONFIG_NAME}` | peft / diffusers (`load_lora_into_pipeline`) |",
        f"| `{EASYANIMATE_LORA_NAME}` | EasyAnimate's `merge_lora` and its ComfyUI nodes (kohya `lora_unet__*` keys) |",
        f"| `{RECIPE_NAME}` | the recipe that trained it: `hf-easyanimate train {RECIPE_NAME}` |",
        "",
        *_usage_lines(facts, pipeline_class, base, facts.repo_id or "path/to/this/folder"),
        "## Training loss",
        "",
        "| step | loss |",
        "|---|---|",
        curve,
        "",
        *_metric_lines(facts),
        "## Recipe",
        "",
        "```yaml",
        recipe_yaml(facts.recipe).rstrip(),
        "```",
        "",
    ]
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines)))


# --- push ---------------------------------------------------------------------------------------------------------

def lora_formats(save_lora_format: str) -> tuple[str, ...]:
    """'both' -> ('peft', 'easyanimate'); 'peft' -> ('peft',); ..."""
    return tuple(LORA_FILES) if save_lora_format == "both" else (save_lora_format,)


def hub_files(folder: str, formats: Sequence[str] = tuple(LORA_FILES), include_resume_state: bool = False) -> list[str]:
    """The files of ``folder`` that may be pushed, by name; nothing else is ever uploaded.

    Only the LoRA files of ``formats`` are listed, so a stale file of another format in the folder stays local.
    """
    excluded = {name for kind, names in LORA_FILES.items() if kind not in formats for name in names}
    names = [name for name in HUB_FILES if name not in excluded and os.path.isfile(os.path.join(folder, name))]
    if include_resume_state:
        names += sorted(
            name for name in os.listdir(folder)
            if name.startswith(RESUME_STATE_PREFIXES) and os.path.isfile(os.path.join(folder, name))
        )
    return names


def format_size(num_bytes: int) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def push_files(
    api,
    repo_id: str,
    folder: str,
    names: Sequence[str],
    *,
    path_in_repo: str = "",
    commit_message: str,
    token: str | None = None,
    revision: str | None = None,
    run_as_future: bool = False,
):
    """One commit adding exactly ``names`` from ``folder``; logs each file's size first."""
    from huggingface_hub import CommitOperationAdd

    operations, total = [], 0
    report = []
    for name in names:
        local = os.path.join(folder, name)
        size = os.path.getsize(local)
        total += size
        target = f"{path_in_repo}/{name}" if path_in_repo else name
        report.append(f"  {target}: {format_size(size)}")
        operations.append(CommitOperationAdd(path_in_repo=target, path_or_fileobj=local))
    logger.warning("Pushing %d files (%s) to %s:\n%s", len(names), format_size(total), repo_id, "\n".join(report))
    kwargs = dict(repo_id=repo_id, operations=operations, commit_message=commit_message, token=token,
                  revision=revision)
    if run_as_future:
        return api.run_as_future(api.create_commit, **kwargs)
    return api.create_commit(**kwargs)


def written_summary(output_dir: str, formats: Sequence[str], rank: int, alpha: float, checkpoints: Sequence[str]) -> str:
    """What training wrote, for the last lines of a run: each LoRA file with its format and size, rank and alpha."""
    labels = {"peft": "peft adapter (diffusers, load_lora_into_pipeline)", "easyanimate": "EasyAnimate / ComfyUI file"}
    lines = [f"LoRA (rank {rank}, alpha {alpha:g}) written to {output_dir}:"]
    for kind in formats:
        names = [n for n in LORA_FILES[kind] if os.path.isfile(os.path.join(output_dir, n))]
        if names:
            size = sum(os.path.getsize(os.path.join(output_dir, n)) for n in names)
            lines.append(f"  {labels[kind]}: {', '.join(os.path.join(output_dir, n) for n in names)} "
                         f"({format_size(size)})")
    if os.path.isfile(os.path.join(output_dir, RECIPE_NAME)):
        lines.append(f"  recipe: {os.path.join(output_dir, RECIPE_NAME)} (`hf-easyanimate train {RECIPE_NAME}` "
                     "reruns it)")
    if checkpoints:
        lines.append(f"  checkpoints: {', '.join(checkpoints)} (resumable with --resume_from_checkpoint latest)")
    return "\n".join(lines)
