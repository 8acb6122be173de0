"""The life cycle every run shares, whatever its trainer: start (logging, preflight with the checkpoint read once,
the components loaded) and finish (train with a graceful stop, write the final LoRA and state, say what was
written). A trainer's run (:mod:`.lora` for the LoRA trainer) builds its parts between the two."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers.trainer_utils import get_last_checkpoint

from ..config import DataArguments, ModelArguments
from ..models.components import EasyAnimateComponents
from ..trainers import BaseTrainer
from ..training.hub import written_summary
from ..training.outputs import checkpoints, clear_previous_run
from ..training.peers import report_lost_peer
from ..training.runtime import setup_logging
from ..training.signals import GracefulStop, TrainingInterrupted
from .components import load_run_components
from .preflight import Preflight, preflight

logger = logging.getLogger("hf_easyanimate")


@dataclass
class StartedRun:
    """What every run has once its checks passed: where it resumes from, the checkpoint, the loaded components."""

    preflight: Preflight
    components: EasyAnimateComponents

    @property
    def resume(self) -> str | None:
        return self.preflight.resume

    def release(self) -> None:
        """End of the run, however it ends: the output folder is free for the next job."""
        self.preflight.release()


def start_run(model_args: ModelArguments, data_args: DataArguments, args) -> StartedRun:
    """Logging, every up-front check (the checkpoint's configs read once, the output folder locked), then the
    components. The caller ends with ``started.release()``, however the run ends."""
    setup_logging(args)
    for note in getattr(args, "launch_notes", ()):
        logger.info(note)
    checked = preflight(model_args, data_args, args)
    try:
        return StartedRun(checked, load_run_components(checked.checkpoint, model_args, data_args, args))
    except BaseException:
        checked.release()
        raise


def train_and_save(trainer: BaseTrainer, resume: str | None) -> BaseTrainer:
    """Train (a signal stops after the current step and checkpoints), write the final LoRA and trainer state, and say
    what was written. ``--overwrite_output_dir`` clears the earlier run only now: a failed load leaves it in place."""
    args = trainer.args
    stop = GracefulStop()
    trainer.add_callback(stop)
    if args.overwrite_output_dir and resume is None and args.should_save:
        clear_previous_run(args.output_dir)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except Exception as failure:
        stop.mute()  # a launcher's SIGTERM waits until a lost peer is reported
        lost = report_lost_peer(failure, args.output_dir)
        if lost is None:
            raise
        raise lost from failure
    finally:  # a run ended by an error gives the stop signals back
        stop.uninstall()
    trainer.save_model(args.output_dir)
    trainer.save_state()  # trainer_state.json beside the adapter: the loss history `hf-easyanimate report` plots
    if stop.signum:
        raise TrainingInterrupted(stop.stopped_at, stop.signum, get_last_checkpoint(args.output_dir))
    report_written(trainer)
    return trainer


def report_written(trainer: BaseTrainer) -> None:
    """The run's last lines: where the LoRA went, in which formats, at which rank and alpha."""
    if not trainer.is_world_process_zero():
        return
    config = trainer.accelerator.unwrap_model(trainer.model).peft_config["default"]
    output_dir = trainer.args.output_dir
    print(written_summary(output_dir, trainer._lora_formats(), config.r, config.lora_alpha, checkpoints(output_dir)))
