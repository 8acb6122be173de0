"""``EasyAnimateTrainer``: a thin ``transformers.Trainer`` subclass that owns the diffusion step."""

from __future__ import annotations

import contextlib
import os
from functools import partial

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer
from transformers.trainer_utils import seed_worker

from .args import EasyAnimateTrainingArguments
from .clipping import original_clip_norm
from .memory import attention_context_factory
from .models.encoders import FrozenEncoders
from .objectives import Objective, with_motion_loss
from .reproducibility import (
    SAMPLE_KEYS,
    ReplayableBatchSampler,
    ReplayableCollator,
    ReplayableDataset,
    seeded_rngs,
    step_seed,
)
from .resume import rotate_checkpoints_keeping


class EasyAnimateTrainer(Trainer):
    """Trains a LoRA on the EasyAnimate transformer.

    ``model`` is the peft-wrapped transformer (the only thing DDP/DeepSpeed wrap and checkpoints save);
    the VAE and text encoder come in through ``encoders``; the loss comes from ``objective``.
    ``train_batch_sampler`` (optional) replaces Trainer's sampler so that every batch shares one size.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: EasyAnimateTrainingArguments,
        encoders: FrozenEncoders,
        objective: Objective,
        train_batch_sampler: Sampler | None = None,
        **kwargs,
    ) -> None:
        self.encoders = encoders
        self.objective = objective
        self.train_batch_sampler = train_batch_sampler
        if args.activation_checkpointing:
            # Trainer would call `activation_checkpointing_enable`, a transformers-only API; diffusers models
            # expose `enable_gradient_checkpointing`, so switch it on here and keep Trainer out of it.
            model.get_base_model().enable_gradient_checkpointing()
            args.activation_checkpointing = args.gradient_checkpointing = False
        super().__init__(model=model, args=args, **kwargs)
        self.resumed_from: str | None = None
        self._attention_context = attention_context_factory(
            args.enable_xformers_memory_efficient_attention, args.device
        )

    # --- life cycle -----------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Trainer's loop; remembers the checkpoint it resumes from so rotation never deletes it."""
        if isinstance(resume_from_checkpoint, str):
            self.resumed_from = resume_from_checkpoint
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch, with its random draws keyed by its samples and the chosen attention kernels."""
        with self._attention_context(), self._step_rngs(inputs):
            return super().training_step(model, inputs, num_items_in_batch)

    def _step_rngs(self, inputs: dict) -> contextlib.AbstractContextManager:
        keys = inputs.get(SAMPLE_KEYS)
        if keys is None:
            return contextlib.nullcontext()
        return seeded_rngs(step_seed(self.args.seed, keys.tolist()), device=self.args.device)

    def _clip_grad_norm(self, model):
        """Clip as the original trainer: a decaying clip norm and harder clipping of abnormal steps.

        DeepSpeed clips inside its engine (``gradient_clipping`` in the config), so it keeps Trainer's path.
        """
        args = self.args
        if self.is_deepspeed_enabled or args.abnormal_norm_clip_start < 0:
            return super()._clip_grad_norm(model)
        total = self.accelerator.clip_grad_norm_(model.parameters(), float("inf"))  # unscales fp16 grads too
        limit = original_clip_norm(
            float(total), self.state.global_step, args.max_grad_norm, args.abnormal_norm_clip_start,
            args.initial_grad_norm_ratio,
        )
        parameters = [p for p in model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grads_with_norm_(parameters, limit, total)
        return total

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, with a rotation that keeps the checkpoint this run resumed from."""
        limit = self.args.save_total_limit
        if not limit or self.resumed_from is None:
            return super()._save_checkpoint(model, trial)
        self.args.save_total_limit = None  # Trainer's own rotation off for this call; ours below
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            torch.save(self.args, os.path.join(folder, "training_args.bin"))  # with the real limit
            keep = {self.resumed_from, self.state.best_model_checkpoint}
            rotate_checkpoints_keeping(self._get_output_dir(trial=trial), limit, keep)

    # --- data -----------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        args = self.args
        # Keyed by (epoch, index): data order, per-sample and per-batch randomness replay exactly on resume.
        batch_sampler = ReplayableBatchSampler(self.train_batch_sampler)
        loader = DataLoader(
            ReplayableDataset(self.train_dataset, args.seed, batch_sampler),
            batch_sampler=batch_sampler,
            collate_fn=ReplayableCollator(self.data_collator, args.seed),
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
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

    # --- objective ------------------------------------------------------------------------------
    def forward_transformer(self, model, **inputs):
        """Call the (wrapped) transformer; under DeepSpeed bf16/fp16, in the engine's dtype.

        Trainer runs DDP/single-process steps under autocast, but a DeepSpeed engine holds its weights in
        bf16/fp16 and does not autocast: floating inputs are cast to that dtype (the timestep stays float32,
        its sinusoidal embedding is computed before diffusers casts it) and outputs come back as float32.
        """
        dtype = None
        if self.is_deepspeed_enabled:
            dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
        if dtype is None:
            return model(**inputs)
        cast = {
            key: value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() and key != "timestep"
            else value
            for key, value in inputs.items()
        }
        output = model(**cast)
        return tuple(o.float() if torch.is_tensor(o) and o.is_floating_point() else o for o in output)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        latents = self.encoders.encode_pixels(inputs["pixel_values"]).float()
        prompt = self.encoders.encode_prompts(inputs["text"])
        noise = torch.randn_like(latents)
        batch = self.objective.prepare(latents, noise)
        pred = self.forward_transformer(
            model,
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
        return (loss, pred) if return_outputs else loss
