"""What a run checks before any model loads, in the order a user fixes things: flags, data, output, model.

Each failure is one message naming the flag and the fix; none needs the 12B weights or a GPU, so a typo costs
seconds, not the minutes a model load takes. The checkpoint's configs are read here, once
(:func:`~hf_easyanimate.models.checkpoint.read_checkpoint`), and handed on: the rules that need them (the
objective it trains with, its frame grid, its block count, whether it can be sampled) run here too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..config.rules import note_off_grid_frames, require
from ..models.checkpoint import Checkpoint, read_checkpoint
from ..models.loading import report_model_config
from ..models.location import check_model_path, looks_local
from ..training.outputs import check_writable, guard_previous_run, remove_interrupted_saves
from ..training.resume import check_remaining, resolve_resume
from ..training.run_lock import FolderLock
from ..utils.files import safetensors_problem

logger = logging.getLogger("hf_easyanimate")

REQUIRED = {
    "pretrained_model_name_or_path": "the EasyAnimate model to fine-tune (a folder or Hub id)",
    "train_data_meta": "the metadata file listing your clips",
}


class PreflightError(ValueError):
    """A run cannot start as configured; the message names the flag and what to do."""


def check_required(model_args, data_args) -> None:
    missing = [
        f"--{name} ({why})" for name, why in REQUIRED.items()
        if not (getattr(model_args, name, None) or getattr(data_args, name, None))
    ]
    if missing:
        raise PreflightError("missing required flag(s): " + "; ".join(missing))


def check_data_paths(data_args) -> None:
    """``--train_data_dir`` must exist; a metadata path that is clearly local must too (else a Hub dataset id)."""
    data_dir = data_args.train_data_dir
    if data_dir and not os.path.isdir(data_dir):
        what = "is a file, not a folder" if os.path.exists(data_dir) else "does not exist"
        raise PreflightError(f"--train_data_dir {data_dir} {what}; it is the folder your metadata's file_path "
                             "entries are relative to")
    for flag in ("train_data_meta", "eval_data_meta"):
        meta = getattr(data_args, flag)
        if meta and not os.path.exists(meta) and (looks_local(meta) or meta.endswith((".json", ".jsonl", ".csv"))):
            raise PreflightError(f"--{flag} {meta} does not exist")


def check_weight_files(model_args) -> None:
    """``--transformer_path`` / ``--vae_path``: readable safetensors, found out before the base model loads."""
    for flag in ("transformer_path", "vae_path"):
        path = getattr(model_args, flag)
        if not path:
            continue
        if not path.endswith(".safetensors"):
            raise PreflightError(f"--{flag} {path}: only .safetensors files are loaded (no pickle files)")
        problem = safetensors_problem(path)
        if problem is not None:
            raise PreflightError(f"--{flag} {path}: {problem}")


def check_clip_model(args) -> None:
    """``--validation_clip_model`` must be loadable when validation samples will be scored: checked from its
    config file, before the base model loads (the model itself is loaded with the validation set-up)."""
    name = str(getattr(args, "validation_clip_model", "none"))
    if not args.validation_prompts or name.lower() == "none":
        return
    hint = ("pass a local CLIP folder (`hf-easyanimate make-tiny-clip DIR` writes a tiny one), a Hub id you have "
            "cached or network for, or --validation_clip_model none to sample without the CLIP metrics")
    if os.path.exists(name) or looks_local(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise PreflightError(f"--validation_clip_model {name}: no CLIP model there (no config.json); {hint}")
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise PreflightError(f"--validation_clip_model {name} is a Hub id, HF_HUB_OFFLINE=1 is set and it is not in "
                             f"the Hugging Face cache; {hint}")


def resolve_loss_type(model_args, args, checkpoint: Checkpoint | None = None) -> None:
    """``--loss_type`` follows the checkpoint when not given; a contradicting explicit value gets one warning."""
    if checkpoint is None:
        checkpoint = read_checkpoint(model_args.pretrained_model_name_or_path, model_args.revision,
                                     model_args.cache_dir, model_args.config_path)
    resolved, why = checkpoint.loss_type()
    if args.loss_type is None:
        args.loss_type = resolved
        logger.info("--loss_type %s: the checkpoint's objective (%s)", resolved, why)
        args.warn_inapplicable_flags()
    elif args.loss_type != resolved:
        logger.warning(
            "--loss_type %s, but this checkpoint was trained with %s (%s); a LoRA trained with another objective "
            "will not sample well. Drop --loss_type (or pass --loss_type %s) unless you mean it.",
            args.loss_type, resolved, why, resolved,
        )


def check_against_checkpoint(checkpoint: Checkpoint, data_args, args) -> None:
    """The flag rules that need the checkpoint: block count, frame grid, whether it can be sampled at all."""
    count = checkpoint.block_count
    if args.blocks_to_swap and count is not None:
        require(args.blocks_to_swap <= count, "blocks_to_swap",
                f"this transformer has {count} blocks; swap at most {count}", args.blocks_to_swap)
    note_off_grid_frames(data_args.video_sample_n_frames, checkpoint.frame_grid)
    if not checkpoint.family.can_decode:
        require(
            not args.validation_prompts, "validation_prompts",
            f"{checkpoint.title} ({checkpoint.source}) is trained without sampling: its VAE decoder is not ported, "
            "so validation videos cannot be made. Drop --validation_prompts (and --validation_images); "
            "--eval_data_meta with --eval_strategy steps still gives a validation loss",
            args.validation_prompts,
        )


@dataclass
class Preflight:
    """What the checks established: the checkpoint to resume from (None: a fresh run), the base model's configs, and
    the lock on ``--output_dir`` (held by the main process until the run ends: :meth:`release`)."""

    resume: str | None
    checkpoint: Checkpoint
    lock: FolderLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def claim_output_dir(args) -> FolderLock | None:
    """The main process locks ``--output_dir`` (one job per folder), then removes what an interrupted save left."""
    if args.process_index != 0:
        return None
    lock = FolderLock(args.output_dir).acquire()
    remove_interrupted_saves(args.output_dir)
    return lock


def preflight(model_args, data_args, args) -> Preflight:
    """Run every up-front check; the checkpoint's configs are read once, here. The output folder is locked from the
    moment it is known to be writable (a failed check releases it)."""
    check_required(model_args, data_args)
    check_data_paths(data_args)
    check_writable(args.output_dir)
    lock = claim_output_dir(args)
    try:
        resume = resolve_resume(args.resume_from_checkpoint, args.output_dir)
        guard_previous_run(args.output_dir, resume, args.overwrite_output_dir)
        check_remaining(resume, args.max_steps, args.num_train_epochs)
        path = model_args.pretrained_model_name_or_path
        check_model_path(path, model_args.revision, model_args.cache_dir)
        check_weight_files(model_args)
        checkpoint = read_checkpoint(path, model_args.revision, model_args.cache_dir, model_args.config_path)
        check_against_checkpoint(checkpoint, data_args, args)
        check_clip_model(args)
        resolve_loss_type(model_args, args, checkpoint)
        checkpoint.check_training_setup(args.loss_type, model_args.train_mode)
        report_model_config(model_args.config_path, path, checkpoint=checkpoint)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Preflight(resume, checkpoint, lock)
