"""``EasyAnimateTrainer``: a thin ``transformers.Trainer`` subclass that owns the diffusion step."""

from __future__ import annotations

import contextlib
import os
import shutil
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import (
    PREFIX_CHECKPOINT_DIR,
    HubStrategy,
    SaveStrategy,
    get_last_checkpoint,
)
from transformers.utils.hub import PushInProgress

from . import hub
from .args import DataArguments, EasyAnimateTrainingArguments, ModelArguments
from .cache.data import (
    INPAINT_MEAN,
    INPAINT_STD,
    LATENT_MEAN,
    LATENT_STD,
    MASKED_VIDEO_LATENTS,
    PROMPT_KEYS,
    REFERENCE_FEATURES,
)
from .callbacks import use_diffusers_tensorboard
from .data.problems import BATCH_KEY, DataProblemLog, DataProblemsCallback
from .data.sampler import unshard_batch_sampler
from .inpaint import InpaintConditioner, empty_inpaint_latents, reference_attention_mask
from .memory.block_swap import BlockSwapper, ignore_in_ddp
from .memory.offload import activation_offload
from .models.encoders import FrozenEncoders
from .models.inputs import base_transformer, transformer_inputs
from .models.lora_files import EASYANIMATE_LORA_NAME, save_easyanimate_lora, save_peft_model
from .utils.atomic import atomic_copy, atomic_path
from .models.lora_format import from_peft
from .objectives import Objective
from .training.attention import attention_context_factory
from .training.clipping import original_clip_norm
from .training.evaluation import EncodeOnce, pinned_index, seeded
from .training.guards import CheckpointSaveError, NonFiniteLossError, NonFiniteLossGuard, SkipUpdate
from .training.reproducibility import (
    SAMPLE_KEYS,
    ReplayableBatchSampler,
    ReplayableCollator,
    ReplayableDataset,
    seeded_rngs,
    step_seed,
)
from .training.resume import rotate_checkpoints_keeping
from .utils.secrets import save_training_args
from .training.signals import seed_worker_for_training


def _hf_api():
    """The HfApi instance Trainer itself uses (one place to mock in tests)."""
    from transformers.utils.hub import hf_api

    return hf_api()


class EasyAnimateTrainer(Trainer):
    """Trains a LoRA on the EasyAnimate transformer.

    ``model`` is the peft-wrapped transformer (the only thing DDP/DeepSpeed wrap and checkpoints save);
    the VAE and text encoder come in through ``encoders``; the loss comes from ``objective``.
    ``inpaint`` (InP checkpoints) builds the transformer's ``inpaint_latents`` from ``mask`` batches.
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
        inpaint: InpaintConditioner | None = None,
        model_args: ModelArguments | None = None,
        data_args: DataArguments | None = None,
        block_swapper: BlockSwapper | None = None,
        **kwargs,
    ) -> None:
        self.encoders = encoders
        self.block_swapper = block_swapper
        self.objective = objective
        self.inpaint = inpaint
        self.train_batch_sampler = train_batch_sampler
        self.eval_batch_sampler = eval_batch_sampler
        self.nonfinite_guard = NonFiniteLossGuard(max_consecutive=args.max_consecutive_nonfinite)
        self._guarding_step = False
        self._eval_records: list[tuple[float, float, int]] = []  # (loss, noise level, batch size) of an evaluation
        # Only for the recipe and the model card written beside the LoRA.
        self.model_args = model_args
        self.data_args = data_args
        if args.activation_checkpointing:
            # Trainer would call `activation_checkpointing_enable`, a transformers-only API; diffusers models
            # expose `enable_gradient_checkpointing`, so switch it on here and keep Trainer out of it.
            checkpoint = None
            if block_swapper is not None:
                # The recompute must run each block to its end so that the block's forward hook returns its
                # swapped weights to the CPU (torch's early stop would skip it).
                checkpoint = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False, early_stop=False)
            model.get_base_model().enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint)
            args.activation_checkpointing = args.gradient_checkpointing = False
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

    # --- saving ---------------------------------------------------------------------------------
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

    # --- model card and Hub --------------------------------------------------------------------------
    def card_facts(self) -> hub.CardFacts:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        config = model.peft_config["default"]
        base = model.get_base_model().config
        train_mode = getattr(self.model_args, "train_mode", "normal")
        return hub.CardFacts(
            base_model=config.base_model_name_or_path,
            image_to_video=train_mode == "inpaint" or base.in_channels != self.encoders.vae.config.latent_channels,
            dataset_size=len(self.train_dataset) if self.train_dataset is not None else None,
            steps=self.state.global_step,
            epochs=self.state.epoch,
            losses=hub.loss_curve_points(self.state.log_history),
            recipe=self.recipe(),
            rank=config.r,
            alpha=config.lora_alpha,
            repo_id=self.hub_model_id,
            metrics=hub.final_metrics(self.state.log_history),
        )

    def create_model_card(self, **kwargs) -> None:
        """Our card (base model, recipe, data size, steps, loss curve, how to load) instead of Trainer's."""
        if not self.is_world_process_zero():
            return
        with atomic_path(os.path.join(self.args.output_dir, hub.MODEL_CARD_NAME)) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(hub.model_card_text(self.card_facts()))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Trainer's push, but the commit lists the LoRA files, recipe and model card explicitly: nothing else."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card()
        self._finish_current_push()
        folder = self.args.output_dir
        return hub.push_files(
            _hf_api(), self.hub_model_id, folder, hub.hub_files(folder, self._lora_formats()),
            commit_message=commit_message, token=token,
            revision=revision if revision is not None else self.args.hub_revision, run_as_future=not blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push after each save (``--hub_strategy`` every_save | checkpoint | all_checkpoints), as Trainer does."""
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = self.args.output_dir
        # The latest adapter becomes the repo's top level, copied (not re-gathered) from the checkpoint.
        formats = self._lora_formats()
        for name in hub.hub_files(checkpoint_folder, formats):
            if name != hub.MODEL_CARD_NAME:
                atomic_copy(os.path.join(checkpoint_folder, name), os.path.join(output_dir, name))
        self.create_model_card()
        if self.args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch or 0)}"
        api, common = _hf_api(), {"token": self.args.hub_token, "revision": self.args.hub_revision}
        jobs = [hub.push_files(api, self.hub_model_id, output_dir, hub.hub_files(output_dir, formats),
                               commit_message=message, run_as_future=True, **common)]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = (
                "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT
                else os.path.basename(os.path.normpath(checkpoint_folder))
            )
            # The checkpoint keeps its peft adapter whatever the format: resuming needs it.
            names = [n for n in hub.hub_files(checkpoint_folder, include_resume_state=True) if n != hub.MODEL_CARD_NAME]
            jobs.append(hub.push_files(api, self.hub_model_id, checkpoint_folder, names, path_in_repo=path_in_repo,
                                       commit_message=message + ", checkpoint", run_as_future=True, **common))
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

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
        if "eval_loss" in logs:  # Trainer.evaluate's own log call (the dict it returns): exact loss and bands
            logs.update(self.eval_losses())
        super().log(logs, start_time)

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Trainer's evaluate with every random draw seeded by ``--seed``; the training RNG stream is restored."""
        with seeded(self.args.seed + self.args.process_index):
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss averaged over ``--eval_timesteps`` fixed timesteps, so it depends on the weights only."""
        inputs = self._prepare_inputs(inputs)
        grid = self.objective.index_grid(self.args.eval_timesteps, device=self.args.device)
        losses = []
        encoders, self.encoders = self.encoders, EncodeOnce(self.encoders)  # one VAE pass per batch, not per t
        try:
            with torch.no_grad():
                for index in grid:
                    with pinned_index(self.objective, index), self.compute_loss_context_manager():
                        losses.append(self.compute_loss(model, inputs).detach().float())
        finally:
            self.encoders = encoders
        size = inputs["pixel_values"].shape[0] if "pixel_values" in inputs else len(inputs.get("text", [0]))
        levels = self.objective.noise_level(grid).tolist()
        self._eval_records += [(float(loss), level, int(size)) for loss, level in zip(losses, levels)]
        return torch.stack(losses).mean(), None, None

    def eval_losses(self) -> dict[str, float]:
        """This evaluation's ``eval_loss`` over every eval sample, and split by noise band (packaged metric).

        Trainer's ``evaluation_loop`` repeats each batch's loss by the *first* batch's size and truncates to the
        number of samples, so with bucketed batches of different sizes it misweights, or drops, the last batches;
        the value computed here weights each (batch, timestep) loss by its batch's size, over all ranks.
        """
        from accelerate.utils import gather_object

        from .metrics import load_metric

        records, self._eval_records = self._eval_records, []
        if self.args.world_size > 1:
            records = gather_object(records)
        if not records:
            return {}
        losses = [loss for loss, _, size in records for _ in range(size)]
        levels = [level for _, level, size in records for _ in range(size)]
        return {"eval_loss": float(np.mean(losses)),
                **load_metric("eval_loss_bands").compute(losses=losses, noise_levels=levels)}

    # --- objective ------------------------------------------------------------------------------
    def inpaint_latents(self, inputs: dict, latents: torch.Tensor) -> torch.Tensor | None:
        """Mask + masked-video latents for InP models; all zeros (text-to-video) when the batch has no mask."""
        if self.inpaint is None:
            return None
        if "mask" not in inputs:
            return empty_inpaint_latents(latents)
        if MASKED_VIDEO_LATENTS in inputs:  # from the latent cache
            return self.inpaint.from_latents(inputs["mask"], inputs[MASKED_VIDEO_LATENTS], latents)
        if INPAINT_MEAN in inputs:  # V2-V4, from the latent cache
            return self.inpaint.from_posterior(inputs["mask"], inputs[INPAINT_MEAN], inputs[INPAINT_STD], latents,
                                               self.encoders.sample_latents)
        return self.inpaint(inputs["pixel_values"], inputs["mask"], latents, self.encoders.encode_pixels)

    def reference_tokens(self, inputs: dict, transformer: torch.nn.Module) -> dict:
        """V3/V4 InP: the CLIP features of each sample's reference frame and the batch's attention mask over them
        (all kept or all dropped, half the time each, as the original); {} for every other model or batch."""
        tokens = getattr(transformer, "clip_tokens", None)
        if tokens is None:
            return {}
        if REFERENCE_FEATURES in inputs:  # from the latent cache (frame 0's)
            features = inputs[REFERENCE_FEATURES].to(self.args.device)
        elif "clip_pixel_values" in inputs and self.encoders.image_encoder is not None:
            features = self.encoders.encode_reference_images(inputs["clip_pixel_values"])
        else:
            return {}
        mask = reference_attention_mask(len(features), tokens, features.device)
        return {"clip_encoder_hidden_states": features, "clip_attention_mask": mask.to(features.dtype)}

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
        if LATENT_MEAN in inputs:  # --latent_cache_dir: the posterior and embeddings were precomputed
            latents = self.encoders.sample_latents(inputs[LATENT_MEAN], inputs[LATENT_STD]).float()
            prompt = {key: inputs[key] for key in PROMPT_KEYS if key in inputs}
        else:
            latents = self.encoders.encode_pixels(inputs["pixel_values"]).float()
            prompt = self.encoders.encode_prompts(inputs["text"])
        inpaint_latents = self.inpaint_latents(inputs, latents)
        transformer = base_transformer(model)
        reference = self.reference_tokens(inputs, transformer)
        batch = self.objective.prepare(latents, self.objective.sample_noise(latents))
        forward = transformer_inputs(transformer, batch.noisy_latents, batch.timesteps, prompt,
                                     inpaint_latents=inpaint_latents, **reference)
        with activation_offload(self.args.activation_offload and model.training, self.args.device):
            pred = self.forward_transformer(model, **forward)[0]
        loss = self._checked(self.objective.loss(pred, batch))
        return (loss, pred) if return_outputs else loss
