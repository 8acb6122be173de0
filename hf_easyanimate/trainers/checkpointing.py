"""What every trainer of the family writes: the LoRA (never the frozen base weights) in the formats asked for, its
recipe and redacted arguments, checkpoints that are never left half-written, and the final save through a staging
folder. A mixin of :class:`~hf_easyanimate.trainers.base.BaseTrainer`."""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..models.lora.files import EASYANIMATE_LORA_NAME, save_easyanimate_lora, save_peft_model
from ..models.lora.format import from_peft
from ..training import hub
from ..training.guards import CheckpointSaveError
from ..training.outputs import STAGING
from ..training.resume import rotate_checkpoints_keeping
from ..utils.atomic import atomic_path
from ..utils.secrets import save_training_args


class LoraCheckpointing:
    """``_save``, ``save_model`` and ``_save_checkpoint`` of Trainer, for a LoRA."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the LoRA (never the frozen base weights), its recipe and the training arguments.

        ``--save_lora_format`` picks the peft adapter, the EasyAnimate/ComfyUI file, or both; ``checkpoint-N/``
        folders always hold the peft adapter too, since Trainer resumes from it. Every file is written under a
        temporary name and renamed, so an interrupted save never leaves a torn file.
        """
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        formats = self._lora_formats()
        is_checkpoint = os.path.basename(os.path.normpath(output_dir)).startswith(f"{PREFIX_CHECKPOINT_DIR}-")
        if "peft" in formats or is_checkpoint:
            save_peft_model(model, output_dir, state_dict=state_dict)
        if "easyanimate" in formats:
            self._save_easyanimate_lora(model, os.path.join(output_dir, EASYANIMATE_LORA_NAME), state_dict)
        with atomic_path(os.path.join(output_dir, hub.RECIPE_NAME)) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(hub.recipe_yaml(self.recipe()))
        save_training_args(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))  # hub_token redacted

    def _save_easyanimate_lora(self, model, path: str, state_dict: dict | None) -> None:
        """The kohya-style file, in the training weight dtype like the original (float32 without mixed precision)."""
        from peft import get_peft_model_state_dict

        config = model.peft_config["default"]
        lora_state = get_peft_model_state_dict(model, state_dict=state_dict, save_embedding_layers=False)
        weights = from_peft(lora_state, config.to_dict(), source="training")
        weights.architecture = type(model.get_base_model()).__name__
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
        save_easyanimate_lora(weights, path, dtype=dtype)

    def _lora_formats(self) -> tuple[str, ...]:
        return hub.lora_formats(self.args.save_lora_format)

    def recipe(self) -> dict[str, Any]:
        return hub.effective_recipe(self.model_args, self.data_args, self.args)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Final save: written into a staging folder first, then moved into place file by file.

        A full disk therefore leaves the previous files in ``output_dir`` untouched instead of half-written.
        (Checkpoint folders are handled by :meth:`_save_checkpoint`.)
        """
        if _internal_call:
            super().save_model(output_dir, _internal_call=True)
            return
        output_dir = output_dir or self.args.output_dir
        staging = os.path.join(output_dir, STAGING)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        try:
            super().save_model(staging, _internal_call=True)  # write only; Trainer's hub push comes after the move
            if self.args.should_save:
                for name in os.listdir(staging):
                    target = os.path.join(output_dir, name)
                    if os.path.isdir(target) and not os.path.islink(target):
                        shutil.rmtree(target)
                    os.replace(os.path.join(staging, name), target)
        finally:
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, but a failed write (disk full, ...) removes the partial ``checkpoint-N``.

        Rotation of old checkpoints happens only after a complete save, so the previous checkpoint survives;
        and it never deletes the checkpoint this run resumed from.
        """
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        limit = self.args.save_total_limit
        protect = bool(limit) and self.resumed_from is not None
        if protect:
            self.args.save_total_limit = None  # Trainer's own rotation off for this call; ours below
        try:
            super()._save_checkpoint(model, trial)
        except Exception as error:
            if self.args.should_save:
                shutil.rmtree(folder, ignore_errors=True)
            last = get_last_checkpoint(run_dir) if os.path.isdir(run_dir) else None
            raise CheckpointSaveError(
                f"writing checkpoint {folder} failed: {error}. The partial folder was removed; "
                + (f"the last complete checkpoint is {last} (resume with --resume_from_checkpoint {last})"
                   if last else "no earlier checkpoint exists")
                + ". Free disk space or choose another --output_dir."
            ) from error
        finally:
            if protect:
                self.args.save_total_limit = limit
        if protect and self.args.should_save:
            # written above with the limit switched off
            save_training_args(self.args, os.path.join(folder, TRAINING_ARGS_NAME))
            rotate_checkpoints_keeping(run_dir, limit, keep={self.resumed_from, self.state.best_model_checkpoint})
