"""The trainers, one per method, as in huggingface/trl: each a thin ``Trainer`` subclass (``*_trainer.py``) and its
config (``*_config.py``) over one shared base (:class:`BaseTrainer`: step, checkpoints, resume, signals, guards,
Hub). Today: the LoRA trainer. The assembly that builds a run for any of them is :mod:`hf_easyanimate.assembly`."""

from .base import BaseTrainer
from .lora_config import EasyAnimateTrainingArguments
from .lora_trainer import EasyAnimateTrainer

__all__ = ["BaseTrainer", "EasyAnimateTrainer", "EasyAnimateTrainingArguments"]
