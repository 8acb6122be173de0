"""``EasyAnimateTrainer``: a thin ``transformers.Trainer`` subclass that owns the diffusion step."""

from __future__ import annotations

import os
from functools import partial

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer
from transformers.trainer_utils import seed_worker

from .args import EasyAnimateTrainingArguments
from .inpaint import InpaintConditioner, empty_inpaint_latents
from .models.encoders import FrozenEncoders
from .objectives import Objective


class EasyAnimateTrainer(Trainer):
    """Trains a LoRA on the EasyAnimate transformer.

    ``model`` is the peft-wrapped transformer (the only thing DDP/DeepSpeed wrap and checkpoints save);
    the VAE and text encoder come in through ``encoders``; the loss comes from ``objective``.
    ``inpaint`` (InP checkpoints) builds the transformer's ``inpaint_latents`` from ``mask`` batches.
    ``train_batch_sampler`` (optional) replaces Trainer's sampler so that every batch shares one size.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: EasyAnimateTrainingArguments,
        encoders: FrozenEncoders,
        objective: Objective,
        train_batch_sampler: Sampler | None = None,
        inpaint: InpaintConditioner | None = None,
        **kwargs,
    ) -> None:
        self.encoders = encoders
        self.objective = objective
        self.inpaint = inpaint
        self.train_batch_sampler = train_batch_sampler
        if args.activation_checkpointing:
            # Trainer would call `activation_checkpointing_enable`, a transformers-only API; diffusers models
            # expose `enable_gradient_checkpointing`, so switch it on here and keep Trainer out of it.
            model.get_base_model().enable_gradient_checkpointing()
            args.activation_checkpointing = args.gradient_checkpointing = False
        super().__init__(model=model, args=args, **kwargs)
        # Trainer seeds every rank alike; like the original (seed + process_index), give each rank its own
        # noise/timestep stream. Trainer saves and restores per-rank RNG states, so resuming stays exact.
        torch.manual_seed(args.seed + args.process_index)

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

    # --- saving ---------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the LoRA adapter only (never the frozen base weights) plus the training arguments."""
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict, save_embedding_layers=False)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    # --- objective ------------------------------------------------------------------------------
    def inpaint_latents(self, inputs: dict, latents: torch.Tensor) -> torch.Tensor | None:
        """Mask + masked-video latents for InP models; all zeros (text-to-video) when the batch has no mask."""
        if self.inpaint is None:
            return None
        if "mask" not in inputs:
            return empty_inpaint_latents(latents)
        encode = partial(self.encoders.encode_pixels, sample=False)
        return self.inpaint(inputs["pixel_values"], inputs["mask"], latents, encode)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        latents = self.encoders.encode_pixels(inputs["pixel_values"]).float()
        prompt = self.encoders.encode_prompts(inputs["text"])
        inpaint_latents = self.inpaint_latents(inputs, latents)
        batch = self.objective.prepare(latents, self.objective.sample_noise(latents))
        pred = model(
            hidden_states=batch.noisy_latents,
            timestep=batch.timesteps,
            encoder_hidden_states=prompt["encoder_hidden_states"],
            encoder_hidden_states_t5=prompt.get("encoder_hidden_states_t5"),
            inpaint_latents=inpaint_latents,
            return_dict=False,
        )[0]
        loss = self.objective.loss(pred, batch)
        return (loss, pred) if return_outputs else loss
