"""``EasyAnimateTrainer``: a thin ``transformers.Trainer`` subclass that owns the diffusion step."""

from __future__ import annotations

import os
import shutil
from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, seed_worker

from .args import EasyAnimateTrainingArguments
from .callbacks import use_diffusers_tensorboard
from .evaluation import EncodeOnce, pinned_timesteps, seeded
from .guards import CheckpointSaveError, NonFiniteLossError, NonFiniteLossGuard, SkipUpdate
from .models.encoders import FrozenEncoders
from .objectives import Objective, with_motion_loss


class EasyAnimateTrainer(Trainer):
    """Trains a LoRA on the EasyAnimate transformer.

    ``model`` is the peft-wrapped transformer (the only thing DDP/DeepSpeed wrap and checkpoints save);
    the VAE and text encoder come in through ``encoders``; the loss comes from ``objective``.
    ``train_batch_sampler`` / ``eval_batch_sampler`` (optional) replace Trainer's samplers so that every batch
    shares one size.

    Beyond ``Trainer``: a NaN/inf loss skips its optimizer update (:class:`NonFiniteLossGuard`), evaluation
    reports a deterministic ``eval_loss`` (fixed timestep grid, seeded noise), and a checkpoint that fails to
    write is removed instead of being left half-written.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: EasyAnimateTrainingArguments,
        encoders: FrozenEncoders,
        objective: Objective,
        train_batch_sampler: Sampler | None = None,
        eval_batch_sampler: Sampler | None = None,
        **kwargs,
    ) -> None:
        self.encoders = encoders
        self.objective = objective
        self.train_batch_sampler = train_batch_sampler
        self.eval_batch_sampler = eval_batch_sampler
        self.nonfinite_guard = NonFiniteLossGuard(max_consecutive=args.max_consecutive_nonfinite)
        self._guarding_step = False
        if args.activation_checkpointing:
            # Trainer would call `activation_checkpointing_enable`, a transformers-only API; diffusers models
            # expose `enable_gradient_checkpointing`, so switch it on here and keep Trainer out of it.
            model.get_base_model().enable_gradient_checkpointing()
            args.activation_checkpointing = args.gradient_checkpointing = False
        super().__init__(model=model, args=args, **kwargs)
        use_diffusers_tensorboard(self)
        self.add_callback(self.nonfinite_guard)

    # --- data -----------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        args = self.args
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.train_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        return self.accelerator.prepare(loader)

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        # Trainer.evaluate passes self.eval_dataset explicitly; only a different dataset goes to Trainer's loader.
        if self.eval_batch_sampler is None or (eval_dataset is not None and eval_dataset is not self.eval_dataset):
            return super().get_eval_dataloader(eval_dataset)
        args = self.args
        loader = DataLoader(
            self.eval_dataset,
            batch_sampler=self.eval_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
        )
        return self.accelerator.prepare(loader)

    # --- saving ---------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the LoRA adapter only (never the frozen base weights) plus the training arguments."""
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict, save_embedding_layers=False)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Final save: written into a staging folder first, then moved into place file by file.

        A full disk therefore leaves the previous files in ``output_dir`` untouched instead of half-written.
        (Checkpoint folders are handled by :meth:`_save_checkpoint`.)
        """
        if _internal_call:
            super().save_model(output_dir, _internal_call=True)
            return
        output_dir = output_dir or self.args.output_dir
        staging = os.path.join(output_dir, ".partial-save")
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

        Rotation of old checkpoints happens only after a complete save, so the previous checkpoint survives.
        """
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
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

    # --- guards ---------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """Trainer's step, except that a non-finite loss (on any rank) leaves without a backward pass."""
        guard = self.nonfinite_guard
        if guard.window_poisoned:
            # An earlier micro-batch of this accumulation window was non-finite: its whole update is skipped.
            return torch.tensor(float("nan"), device=self.args.device)
        self._guarding_step = True
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        except SkipUpdate as skip:
            guard.window_poisoned = True
            if not self.is_deepspeed_enabled:  # DeepSpeed keeps gradients in its engine (see docs/monitoring.md)
                model.zero_grad(set_to_none=True)  # drop gradients of earlier micro-batches of this window
            return skip.loss.to(self.args.device)
        finally:
            self._guarding_step = False

    def _checked(self, loss: torch.Tensor) -> torch.Tensor:
        """In a training step, stop before backward when the loss is NaN/inf on any rank."""
        if self._guarding_step and self.nonfinite_guard.should_skip(loss):
            raise SkipUpdate(loss.detach())
        return loss

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        guard = self.nonfinite_guard
        if guard.tripped_at is not None:
            self.save_state()  # trainer_state.json with the loss history, for `hf-easyanimate report`
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            raise NonFiniteLossError(guard.message(last))
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.nonfinite_guard.total and "loss" in logs:
            logs["nonfinite_skipped_steps"] = self.nonfinite_guard.total
        super().log(logs, start_time)

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Trainer's evaluate with every random draw seeded by ``--seed``; the training RNG stream is restored."""
        with seeded(self.args.seed + self.args.process_index):
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss averaged over ``--eval_timesteps`` fixed timesteps, so it depends on the weights only."""
        inputs = self._prepare_inputs(inputs)
        grid = self.objective.timestep_grid(self.args.eval_timesteps, device=self.args.device)
        losses = []
        encoders, self.encoders = self.encoders, EncodeOnce(self.encoders)  # one VAE pass per batch, not per t
        try:
            with torch.no_grad():
                for timestep in grid:
                    with pinned_timesteps(self.objective, timestep), self.compute_loss_context_manager():
                        losses.append(self.compute_loss(model, inputs).detach().float())
        finally:
            self.encoders = encoders
        return torch.stack(losses).mean(), None, None

    # --- objective ------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        latents = self.encoders.encode_pixels(inputs["pixel_values"]).float()
        prompt = self.encoders.encode_prompts(inputs["text"])
        noise = torch.randn_like(latents)
        batch = self.objective.prepare(latents, noise)
        pred = model(
            hidden_states=batch.noisy_latents,
            timestep=batch.timesteps,
            encoder_hidden_states=prompt["encoder_hidden_states"],
            return_dict=False,
        )[0]
        if pred.shape[1] != batch.target.shape[1]:
            pred = pred[:, : batch.target.shape[1]]  # learned-sigma heads: the first half is the prediction
        loss = self.objective.loss(pred, batch.target, batch.timesteps)
        if self.args.motion_sub_loss:
            loss = with_motion_loss(loss, pred, batch.target, self.args.motion_sub_loss_ratio)
        loss = self._checked(loss)
        return (loss, pred) if return_outputs else loss
