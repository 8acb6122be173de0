"""``EasyAnimateTrainer``: the LoRA trainer, a thin :class:`~hf_easyanimate.trainers.base.BaseTrainer` whose step is
the diffusion loss of the checkpoint's objective.

``compute_loss`` takes whatever the batch says it holds (pixels and captions, or cached posteriors and prompt
embeddings: :class:`~hf_easyanimate.data.batch.TrainingBatch`), adds the inpaint conditioning of InP checkpoints and
the V3/V4 reference-image tokens, noises the latents with the objective and compares the transformer's prediction
with the objective's target. Evaluation reports a deterministic ``eval_loss`` (fixed timestep grid, seeded noise),
weighted exactly by sample and split by noise level.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from ..config import DataArguments, ModelArguments
from ..data.batch import TrainingBatch
from ..memory.block_swap import BlockSwapper
from ..memory.offload import activation_offload
from ..models.inpaint import InpaintConditioner, empty_inpaint_latents, reference_attention_mask
from ..models.inputs import base_transformer, transformer_inputs
from ..objectives import Objective
from ..training.evaluation import EncodeOnce, pinned_index, seeded
from .base import BaseTrainer
from .lora_config import EasyAnimateTrainingArguments


class EasyAnimateTrainer(BaseTrainer):
    """Trains a LoRA on the EasyAnimate transformer with the diffusion loss of ``objective``.

    ``model`` is the peft-wrapped transformer; ``encoders`` the frozen VAE and text encoder(s)
    (:class:`~hf_easyanimate.models.encoders.FrozenEncoders`); ``inpaint`` (InP checkpoints) builds the transformer's
    ``inpaint_latents`` from batches that carry a ``mask``. See :class:`BaseTrainer` for the rest.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: EasyAnimateTrainingArguments,
        encoders,
        objective: Objective,
        train_batch_sampler: Sampler | None = None,
        eval_batch_sampler: Sampler | None = None,
        inpaint: InpaintConditioner | None = None,
        model_args: ModelArguments | None = None,
        data_args: DataArguments | None = None,
        block_swapper: BlockSwapper | None = None,
        **kwargs,
    ) -> None:
        self.objective = objective
        self.inpaint = inpaint
        self._eval_records: list[tuple[float, float, int]] = []  # (loss, noise level, batch size) of an evaluation
        super().__init__(model, args, encoders, train_batch_sampler=train_batch_sampler,
                         eval_batch_sampler=eval_batch_sampler, model_args=model_args, data_args=data_args,
                         block_swapper=block_swapper, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
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
        size = inputs.size
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

        from ..metrics import load_metric

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
    def inpaint_latents(self, inputs, latents: torch.Tensor) -> torch.Tensor | None:
        """Mask + masked-video latents for InP models; all zeros (text-to-video) when the batch has no mask."""
        if self.inpaint is None:
            return None
        conditioning = inputs.inpaint_latents(self.inpaint, latents, self.encoders)
        return empty_inpaint_latents(latents) if conditioning is None else conditioning

    def reference_tokens(self, inputs, transformer: torch.nn.Module) -> dict:
        """V3/V4 InP: the CLIP features of each sample's reference frame and the batch's attention mask over them
        (all kept or all dropped, half the time each, as the original); {} for every other model or batch."""
        tokens = getattr(transformer, "clip_tokens", None)
        if tokens is None:
            return {}
        features = inputs.reference_features(self.encoders)
        if features is None:
            return {}
        features = features.to(self.args.device)
        mask = reference_attention_mask(len(features), tokens, features.device)
        return {"clip_encoder_hidden_states": features, "clip_attention_mask": mask.to(features.dtype)}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not isinstance(inputs, TrainingBatch):
            raise TypeError(
                f"{type(self).__name__} takes batches that say what they hold: a PixelBatch (pixels and captions, from "
                f"EasyAnimateCollator) or a LatentBatch (from CachedCollator), got a {type(inputs).__name__}. A custom "
                "collator can return PixelBatch({'pixel_values': ..., 'text': [...]}) (hf_easyanimate.data.batch)."
            )
        latents = inputs.latents(self.encoders)
        prompt = inputs.prompt_embeddings(self.encoders)
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
