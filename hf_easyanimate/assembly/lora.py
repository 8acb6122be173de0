"""The LoRA trainer's run: from parsed arguments to a trained LoRA, over the shared life cycle (:mod:`.lifecycle`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from transformers import TrainerCallback

from ..config import DataArguments, ModelArguments
from ..memory.block_swap import swap_blocks
from ..models.vae import frame_grid
from ..trainers import EasyAnimateTrainer, EasyAnimateTrainingArguments
from ..training.distributed import EngineReport
from .components import build_encoders, build_inpaint_conditioner, build_lora_model, run_prompt_encoder
from .data import build_eval_data, build_run_data, report_bucket_plan
from .lifecycle import StartedRun, start_run, train_and_save
from .objective import build_objective, optimizer_override
from .validation import build_validation

logger = logging.getLogger("hf_easyanimate")


def build_lora_trainer(started: StartedRun, model_args: ModelArguments, data_args: DataArguments,
                       args: EasyAnimateTrainingArguments,
                       callbacks: Sequence[TrainerCallback] = ()) -> EasyAnimateTrainer:
    """The LoRA trainer of a started run: objective, conditioning, data, the LoRA model, encoders, validation."""
    components = started.components
    objective = build_objective(args, components)
    inpaint = build_inpaint_conditioner(components)
    prompt_encoder = run_prompt_encoder(components, model_args)
    dataset, sampler, collator = build_run_data(model_args, data_args, args, components, prompt_encoder, inpaint)
    if args.should_log:
        report_bucket_plan(sampler, args)
    model = build_lora_model(components.transformer, model_args, args)
    swapper = swap_blocks(components.transformer, args.blocks_to_swap, args.device)
    if args.should_log and args.device.type == "cuda":
        from ..memory.run_plan import startup_line

        logger.info(startup_line(started.preflight.checkpoint, model_args, data_args, args))
    encoders = build_encoders(components, prompt_encoder, data_args, args)
    eval_dataset, eval_sampler = build_eval_data(data_args, args, frame_grid(components.vae))
    trainer = EasyAnimateTrainer(
        model=model, args=args, encoders=encoders, objective=objective, inpaint=inpaint, train_dataset=dataset,
        eval_dataset=eval_dataset, data_collator=collator, train_batch_sampler=sampler, eval_batch_sampler=eval_sampler,
        model_args=model_args, data_args=data_args, callbacks=list(callbacks),
        optimizer_cls_and_kwargs=optimizer_override(args), block_swapper=swapper, family=components.family,
    )
    validation = build_validation(args, data_args, components, trainer)
    if validation is not None:
        trainer.add_callback(validation)
    if args.report_model_info:
        trainer.add_callback(EngineReport(trainer))
    return trainer


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: EasyAnimateTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
) -> EasyAnimateTrainer:
    """Build everything for the LoRA trainer from parsed arguments, train, save the LoRA; returns the trainer."""
    started = start_run(model_args, data_args, args)
    try:
        return train_and_save(build_lora_trainer(started, model_args, data_args, args, callbacks), started.resume)
    finally:
        started.release()
