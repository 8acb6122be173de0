"""The assembly every trainer shares: from parsed arguments to a trainer that runs. The preflight reads the
checkpoint once and checks everything a user can get wrong before a weight loads; then components, objective, data,
the LoRA model, validation, the trainer; then train and save. :mod:`.lifecycle` is what every run shares, :mod:`.lora`
the LoRA trainer's run."""

from .components import (
    apply_storage_dtypes,
    build_encoders,
    build_inpaint_conditioner,
    build_lora_model,
    load_run_components,
    needs_encoder_weights,
    run_prompt_encoder,
)
from .data import build_cached_training_data, build_eval_data, build_run_data, build_training_data, report_bucket_plan
from .lifecycle import StartedRun, report_written, start_run, train_and_save
from .lora import build_lora_trainer, run
from .objective import build_objective, optimizer_override
from .preflight import Preflight, PreflightError, preflight
from .validation import build_validation, load_validation_clip

__all__ = [
    "Preflight",
    "PreflightError",
    "StartedRun",
    "apply_storage_dtypes",
    "build_cached_training_data",
    "build_encoders",
    "build_eval_data",
    "build_inpaint_conditioner",
    "build_lora_trainer",
    "build_lora_model",
    "build_objective",
    "build_run_data",
    "build_training_data",
    "build_validation",
    "load_run_components",
    "load_validation_clip",
    "needs_encoder_weights",
    "optimizer_override",
    "preflight",
    "report_bucket_plan",
    "report_written",
    "run",
    "run_prompt_encoder",
    "start_run",
    "train_and_save",
]
