"""``BaseTrainer``: what every trainer of the family shares on top of ``transformers.Trainer``.

The model Trainer sees is the peft-wrapped transformer only (DDP / DeepSpeed wrap nothing else, checkpoints hold
nothing else); the frozen VAE and text encoders come in as ``encoders``. On top of Trainer: bucketed batch samplers
whose data order and per-sample draws replay exactly on resume, the original's gradient clipping, a NaN/inf guard
that skips the update, gradient checkpointing on diffusers models, block swapping, per-step attention kernels, and
(mixins) the LoRA files, checkpoints that are never half-written, the model card and the Hub push. A method's
trainer (:mod:`.lora_trainer`, the reward and control trainers) adds its ``compute_loss`` and evaluation.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from ..config import BaseTrainingArguments, DataArguments, ModelArguments
from ..data.problems import BATCH_KEY, DataProblemLog, DataProblemsCallback
from ..data.sampler import unshard_batch_sampler
from ..memory.block_swap import BlockSwapper, ignore_in_ddp
from ..training.attention import attention_context_factory
from ..training.clipping import original_clip_norm
from ..training.guards import NonFiniteLossError, NonFiniteLossGuard, SkipUpdate
from ..training.reproducibility import (
    SAMPLE_KEYS,
    ReplayableBatchSampler,
    ReplayableCollator,
    ReplayableDataset,
    seeded_rngs,
    step_seed,
)
from ..training.signals import seed_worker_for_training
from ..training.validation import use_diffusers_tensorboard
from .checkpointing import LoraCheckpointing
from .hub_push import HubPublishing


class BaseTrainer(HubPublishing, LoraCheckpointing, Trainer):
    """Trains a LoRA on an EasyAnimate transformer; subclasses say what the loss is.

    ``train_batch_sampler`` / ``eval_batch_sampler`` (optional) replace Trainer's samplers so that every batch
    shares one size; ``model_args`` / ``data_args`` only go into the recipe and model card written beside the
    LoRA; ``family`` (the checkpoint's :class:`~hf_easyanimate.models.family.ModelFamily`) names the pipeline the
    card tells users to load the LoRA into.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: BaseTrainingArguments,
        encoders: Any = None,
        train_batch_sampler: Sampler | None = None,
        eval_batch_sampler: Sampler | None = None,
        model_args: ModelArguments | None = None,
        data_args: DataArguments | None = None,
        block_swapper: BlockSwapper | None = None,
        family: Any = None,
        **kwargs,
    ) -> None:
        self.encoders = encoders
        self.block_swapper = block_swapper
        self.family = family
        self.train_batch_sampler = train_batch_sampler
        self.eval_batch_sampler = eval_batch_sampler
        self.nonfinite_guard = NonFiniteLossGuard(max_consecutive=args.max_consecutive_nonfinite)
        self._guarding_step = False
        self.model_args = model_args
        self.data_args = data_args
        self._enable_gradient_checkpointing(model, args, block_swapper)
        if block_swapper is not None:
            ignore_in_ddp(model, block_swapper.swapped_parameters)  # frozen and not on the device: DDP skips them
        super().__init__(model=model, args=args, **kwargs)
        # Trainer seeds every rank alike; like the original (seed + process_index), give each rank its own
        # stream. Inside training steps the draws are keyed by the samples instead (reproducibility.py), which
        # keeps ranks apart too and makes resume exact.
        torch.manual_seed(args.seed + args.process_index)
        self.resumed_from: str | None = None
        self._attention_context = attention_context_factory(
            args.enable_xformers_memory_efficient_attention, args.device
        )
        use_diffusers_tensorboard(self)
        self.add_callback(self.nonfinite_guard)
        # Bad samples found before training (kept on the dataset) and skipped while training; totals at the end.
        problems = getattr(self.train_dataset, "problems", None)
        self.data_problems = problems if isinstance(problems, DataProblemLog) else DataProblemLog()
        self.add_callback(DataProblemsCallback(self.data_problems))

    @staticmethod
    def _enable_gradient_checkpointing(model, args, block_swapper) -> None:
        """Trainer would call ``activation_checkpointing_enable``, a transformers-only API; diffusers models expose
        ``enable_gradient_checkpointing``, so switch it on here and keep Trainer out of it."""
        if not args.activation_checkpointing:
            return
        checkpoint = None
        if block_swapper is not None:
            # The recompute must run each block to its end so that the block's forward hook returns its
            # swapped weights to the CPU (torch's early stop would skip it).
            checkpoint = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False, early_stop=False)
        model.get_base_model().enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint)
        args.activation_checkpointing = args.gradient_checkpointing = False

    # --- life cycle -----------------------------------------------------------------------------
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
        trainable = self._trainable_parameters(model)
        total = self.accelerator.clip_grad_norm_(trainable, float("inf"))  # unscales fp16 grads too
        limit = original_clip_norm(
            float(total), self.state.global_step, args.max_grad_norm, args.abnormal_norm_clip_start,
            args.initial_grad_norm_ratio,
        )
        parameters = [p for p in trainable if p.grad is not None]
        torch.nn.utils.clip_grads_with_norm_(parameters, limit, total)
        return total

    def _trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """The LoRA parameters, listed once: walking the frozen 12B module tree every step costs milliseconds."""
        cached = getattr(self, "_trainable_cache", None)
        if cached is None or cached[0] is not model:
            cached = self._trainable_cache = (model, [p for p in model.parameters() if p.requires_grad])
        return cached[1]

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
            worker_init_fn=partial(
                seed_worker_for_training, num_workers=args.dataloader_num_workers, rank=args.process_index
            ),
        )
        # The sampler is rank-aware: accelerate's BatchSamplerShard must pass its batches through unsplit.
        return unshard_batch_sampler(self.accelerator.prepare(loader), self.train_batch_sampler)

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Record the samples the dataset skipped for this (training) batch, then Trainer's device placement."""
        skipped = inputs.pop(BATCH_KEY, ())
        if self.model.training:  # eval batches come from another metadata file: their rows are not these
            self.data_problems.extend(skipped)
        return super()._prepare_inputs(inputs)

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

    # --- guards ---------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """Trainer's step, except that a non-finite loss (on any rank) leaves without a backward pass."""
        guard = self.nonfinite_guard
        if guard.window_poisoned:
            # An earlier micro-batch of this accumulation window was non-finite: its whole update is skipped.
            return torch.tensor(float("nan"), device=self.args.device)
        self._guarding_step = True
        try:
            # Random draws keyed by the micro-batch's samples (exact resume, layout-independent); attention kernels.
            with self._attention_context(), self._step_rngs(inputs):
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

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if isinstance(resume_from_checkpoint, str):
            self.resumed_from = resume_from_checkpoint  # rotation never deletes it
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
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

    # --- the transformer ------------------------------------------------------------------------
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
