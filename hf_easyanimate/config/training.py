"""``BaseTrainingArguments``: what every trainer of the family shares on top of ``TrainingArguments``.

The original trainer's defaults (re-declared, each with a note), the memory flags, checkpoints and LoRA files,
validation sampling, the NaN guard, and the launch handling (:mod:`.launch`). Each trainer's config extends it with
its method's own flags (the LoRA trainer's objective: :mod:`hf_easyanimate.trainers.lora_config`). Flags that have a
twin in ``TrainingArguments`` are not duplicated (``--train_batch_size`` is ``per_device_train_batch_size``, ...):
:mod:`.dialect` translates the original spelling. ``flag_sections`` groups ``--help`` and docs/flags.md;
``no_effect_flags`` are accepted for the original's command lines and do nothing (the table and --help say so).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from transformers import TrainingArguments

from .launch import configure_launch, setup_devices
from .rules import ArgumentValidationError, adjust_frames, require

logger = logging.getLogger(__name__)

SAVE_LORA_FORMATS = ("peft", "easyanimate", "both")
MEMORY_FLAGS = ("vae_mini_batch", "low_vram", "enable_xformers_memory_efficient_attention", "multi_stream",
                "base_weight_dtype", "text_encoder_dtype", "blocks_to_swap", "activation_offload")
STORAGE_DTYPE_NAMES = ("float8_e4m3fn", "float8_e5m2", "bfloat16", "float16")


@dataclass
class BaseTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus EasyAnimate's memory, checkpoint, validation and launch flags."""

    flag_sections: ClassVar[dict[str, tuple[str, ...]]] = {"memory": MEMORY_FLAGS}
    no_effect_flags: ClassVar[tuple[str, ...]] = ("use_ema", "multi_stream", "tracker_project_name")

    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Batch size per device (original flag: --train_batch_size, default 16)."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate (original default 1e-4)."})
    weight_decay: float = field(
        default=1e-2, metadata={"help": "AdamW weight decay (original flag: --adam_weight_decay, default 1e-2)."}
    )
    num_train_epochs: float = field(default=100, metadata={"help": "Epochs (original default 100)."})
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": "LR schedule (original flag: --lr_scheduler, default 'constant')."}
    )
    warmup_steps: float = field(
        default=500,
        metadata={
            "help": "Warm-up steps (original flag: --lr_warmup_steps, default 500). Like the original, "
            "the 'constant' schedule ignores it; use 'constant_with_warmup' to warm up."
        },
    )
    logging_steps: float = field(
        default=1, metadata={"help": "Log every N steps (the original logs the loss every step)."}
    )
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata={"help": "Trackers (original default 'tensorboard'); 'none' disables."}
    )
    log_level_replica: str = field(
        default="error",
        metadata={
            "help": "Log level of processes other than the main one: 'error' so that their notices, which repeat "
            "the main process's, are not printed N times (Trainer's default: 'warning')."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: batches carry pixels and captions, not model kwargs."}
    )
    vae_mini_batch: int = field(
        default=32, metadata={"help": "Encode the batch with the VAE in chunks of N clips."}
    )
    scale_lr: bool = field(
        default=False,
        metadata={"help": "Scale the learning rate by grad-accumulation x batch size x number of processes."},
    )
    use_came: bool = field(default=False, metadata={"help": "Use the CAME optimizer (needs `came_pytorch`)."})
    use_ema: bool = field(
        default=False, metadata={"help": "Accepted for compatibility; EMA of a LoRA is not used."}
    )
    abnormal_norm_clip_start: int = field(
        default=1000,
        metadata={
            "help": "The original's adaptive clipping (not with DeepSpeed): the clip norm decays linearly from "
            "initial_grad_norm_ratio x max_grad_norm to max_grad_norm over this many steps; after it, a step whose "
            "norm exceeds 5x the limit is clipped to limit / min(norm / limit, 10). A negative value turns both off "
            "(plain Trainer clipping at max_grad_norm)."
        },
    )
    initial_grad_norm_ratio: int = field(
        default=5,
        metadata={"help": "Clip norm at step 0, as a multiple of max_grad_norm (see abnormal_norm_clip_start)."},
    )
    low_vram: bool = field(
        default=False,
        metadata={
            "help": "Keep the VAE and text encoder on CPU; move them to the accelerator only to encode.",
        },
    )
    enable_xformers_memory_efficient_attention: bool = field(
        default=False,
        metadata={
            "help": "Memory-efficient attention. diffusers' EasyAnimate attention runs on PyTorch SDPA (xformers' "
            "processor does not implement it), so on CUDA SDPA is restricted to its flash / memory-efficient / cuDNN "
            "kernels for the whole step; elsewhere a warning says no such kernel exists and default SDPA is used."
        },
    )
    use_deepspeed: bool = field(
        default=False,
        metadata={
            "help": "Original flag: say that this run uses DeepSpeed. DeepSpeed itself is switched on by "
            "`accelerate launch --use_deepspeed --deepspeed_config_file F` or by --deepspeed F (alias "
            "--deepspeed_config_file); --use_deepspeed without either is an error rather than a silent DDP run."
        },
    )
    ddp_timeout: int = field(
        default=1800,
        metadata={
            "help": "Seconds a collective (and the process-group start) waits for the other ranks. A rank that dies "
            "ends the job at once under gloo and torchrun; a rank that hangs (NCCL) is given up on after this long, "
            "and the job ends with the last checkpoint intact. Lower it on a cluster that bills idle GPUs."
        },
    )
    multi_stream: bool = field(
        default=False,
        metadata={"help": "Accepted for compatibility; has no effect."},
    )
    base_weight_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Store the frozen transformer weights in this dtype and compute in the training dtype "
            f"(bf16/fp16): one of {', '.join(STORAGE_DTYPE_NAMES)}. float8 halves the base weights of a bf16 run "
            "(12B: 22 -> 12 GiB); "
            "norms, embeddings, input/output projections and the LoRA stay in the training dtype (docs/memory.md). "
            "Saves at the step's peak with --gradient_checkpointing."
        },
    )
    text_encoder_dtype: str | None = field(
        default=None,
        metadata={
            "help": "The same for the text encoder(s), for runs without --latent_cache_dir: "
            f"one of {', '.join(STORAGE_DTYPE_NAMES)}.",
        },
    )
    blocks_to_swap: int = field(
        default=0,
        metadata={
            "help": "Keep the frozen weights of the last N transformer blocks in (pinned) CPU memory and copy each to "
            "the GPU just before it runs (forward, the checkpoint recompute and backward), the next one prefetched "
            "on a side stream; LoRA weights, gradients and optimizer state stay on the GPU. Needs "
            "--gradient_checkpointing; not with DeepSpeed. `hf-easyanimate plan-memory` says how many fit."
        },
    )
    activation_offload: bool = field(
        default=False,
        metadata={
            "help": "Keep the tensors saved for backward (with --gradient_checkpointing: each block's input) in "
            "pinned CPU memory instead of on the GPU (torch.autograd.graph.save_on_cpu).",
        },
    )
    tracker_project_name: str = field(
        default="text2video-fine-tune",
        metadata={
            "help": "Accepted for the original command lines, with no effect: TensorBoard logs go to "
            "<output_dir>/runs (Trainer's layout) and wandb takes its project from WANDB_PROJECT.",
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an --output_dir that already holds an earlier run (checkpoints, LoRA, "
            "trainer_state.json): its checkpoints and LoRA files are deleted first. Without it such a run stops "
            "before loading any model, saying what is there (or resume it with --resume_from_checkpoint latest)."
        },
    )
    save_state: bool = field(
        default=True,
        metadata={"help": "Checkpoints hold optimizer/scheduler/RNG state too, so runs resume exactly."},
    )
    save_lora_format: str = field(
        default="both",
        metadata={
            "help": f"LoRA files written, one of {SAVE_LORA_FORMATS}: the peft adapter (adapter_model.safetensors + "
            "adapter_config.json) and/or the EasyAnimate/ComfyUI file (easyanimate_lora.safetensors, kohya "
            "`lora_unet__*` keys, saved in the training dtype like the original). checkpoint-N/ folders always "
            "hold the peft adapter too: Trainer resumes from it."
        },
    )
    validation_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts sampled with the current LoRA during training (mp4 + contact sheet under "
            "output_dir/validation/step-N/, logged to TensorBoard/wandb). Off when unset."
        },
    )
    validation_images: list[str] | None = field(
        default=None,
        metadata={
            "help": "--train_mode inpaint: first-frame reference images for the validation prompts, one per prompt "
            "or one for all. Without them an InP model samples text-to-video (everything masked)."
        },
    )
    validation_steps: int | None = field(
        default=None,
        metadata={
            "help": "Sample validation prompts every N steps. Given alone, it is the only schedule. With neither "
            "this nor --validation_epochs, the original's two schedules run: every 2000 steps and every 5 epochs."
        },
    )
    validation_epochs: int | None = field(
        default=None,
        metadata={
            "help": "Sample after epoch 1, 1 + N, 1 + 2N, ... (the original's epoch % N == 0, 0-based). Given alone, "
            "it is the only schedule (see --validation_steps)."
        },
    )
    validation_num_frames: int | None = field(
        default=None,
        metadata={"help": "Frames per validation video (default: --video_sample_n_frames on the VAE's grid); put on "
                  "the 4n + 1 grid."},
    )
    validation_num_inference_steps: int = field(
        default=50, metadata={"help": "Denoising steps per validation video (the pipeline's default)."}
    )
    validation_guidance_scale: float = field(
        default=6.0, metadata={"help": "Classifier-free guidance scale of validation sampling (original: 6.0)."}
    )
    validation_negative_prompt: str = field(
        default="bad detailed", metadata={"help": "Negative prompt of validation sampling (original: 'bad detailed')."}
    )
    validation_clip_model: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={
            "help": "CLIP model (folder or Hub id) that scores validation clips: text_alignment (frames vs prompt) and "
            "temporal_consistency (consecutive frames), in validation/step-N/metrics.json and the trackers. Loaded "
            "at start-up, only when --validation_prompts is set; 'none' turns these metrics off (also spelt "
            "--clip_model, as `hf-easyanimate compare` names it). "
            "`hf-easyanimate make-tiny-clip DIR` writes a tiny one for demos."
        },
    )
    max_consecutive_nonfinite: int = field(
        default=5,
        metadata={
            "help": "A NaN/inf loss skips that optimizer update (counted, logged as nonfinite_skipped_steps); this "
            "many in a row stop training with an error, leaving the checkpoints written so far intact."
        },
    )
    report_model_info: bool = field(
        default=False,
        metadata={
            "help": "At train begin, log (and write output_dir/model_info.json, all ranks) what the DDP/DeepSpeed "
            "engine wraps and optimises: LoRA tensors only, frozen VAE/text encoders outside it, gradient "
            "checkpointing on. Per-step gradient norms are logged as `grad_norm` anyway."
        },
    )

    def __post_init__(self) -> None:
        configure_launch(self)
        self.check_flags()
        super().__post_init__()
        if self.scale_lr:
            self._scale_learning_rate()

    def check_flags(self) -> None:
        """Every value rule of this config, before Trainer builds anything; a trainer's config extends it."""
        require(self.save_lora_format in SAVE_LORA_FORMATS, "save_lora_format", f"must be one of {SAVE_LORA_FORMATS}",
                self.save_lora_format)
        self._check_numbers()
        self._resolve_validation_schedule()
        self._check_optimizer_available()
        self._check_memory_flags()

    _setup_devices = cached_property(setup_devices)

    def _check_memory_flags(self) -> None:
        """The memory flags' own rules (the block count is checked against the checkpoint in the preflight)."""
        from ..memory.storage import StorageDtypeError, storage_dtype

        for key in ("base_weight_dtype", "text_encoder_dtype"):
            value = getattr(self, key)
            try:
                storage_dtype(value)
            except StorageDtypeError as error:
                raise ArgumentValidationError(f"--{key}={value!r}: {error}") from None
        require(self.blocks_to_swap >= 0, "blocks_to_swap", "must be >= 0 (0 keeps every block on the GPU)",
                self.blocks_to_swap)
        if self.blocks_to_swap:
            require(
                bool(self.activation_checkpointing or self.gradient_checkpointing), "blocks_to_swap",
                "needs --gradient_checkpointing: without it autograd keeps every swapped block's weights on the GPU "
                "until the backward pass, so nothing is saved", self.blocks_to_swap,
            )
            require(
                not self.deepspeed, "blocks_to_swap",
                "is not supported with DeepSpeed (ZeRO partitions and moves parameters itself); drop --deepspeed, or "
                "use ZeRO's own offload in the DeepSpeed config", self.blocks_to_swap,
            )

    def _resolve_validation_schedule(self) -> None:
        """Either schedule alone is the only one; neither given means the original's two (2000 steps, 5 epochs)."""
        if self.validation_steps is None and self.validation_epochs is None:
            self.validation_steps, self.validation_epochs = 2000, 5

    def _check_optimizer_available(self) -> None:
        optim = str(getattr(self.optim, "value", self.optim))
        if "bnb" in optim or "8bit" in optim:
            require(
                importlib.util.find_spec("bitsandbytes") is not None,
                "optim",
                "8-bit Adam (--use_8bit_adam) needs bitsandbytes: `pip install bitsandbytes` "
                "(or `pip install hf_easyanimate[lowmem]`), or drop the flag",
                optim,
            )
        if self.use_came:
            require(
                importlib.util.find_spec("came_pytorch") is not None,
                "use_came",
                "the CAME optimizer needs came_pytorch: `pip install came-pytorch` (or hf_easyanimate[came])",
                self.use_came,
            )
            require(
                "bnb" not in optim and "8bit" not in optim,
                "use_came",
                "cannot be combined with --use_8bit_adam; pick one optimizer",
                self.use_came,
            )

    def _scale_learning_rate(self) -> None:
        """--scale_lr as the original: lr x gradient_accumulation_steps x per-device batch x processes."""
        factor = self.gradient_accumulation_steps * self.per_device_train_batch_size * self.world_size
        logger.warning(
            "--scale_lr: learning rate %g x %d (accumulation %d x batch %d x processes %d) = %g",
            self.learning_rate, factor, self.gradient_accumulation_steps, self.per_device_train_batch_size,
            self.world_size, self.learning_rate * factor,
        )
        self.learning_rate *= factor

    # numeric flags: (name, rule) checked before anything is built; a trainer's config adds its own
    POSITIVE = ("learning_rate", "vae_mini_batch", "per_device_train_batch_size", "per_device_eval_batch_size",
                "gradient_accumulation_steps", "adam_epsilon", "initial_grad_norm_ratio",
                "validation_num_inference_steps", "max_consecutive_nonfinite")
    # abnormal_norm_clip_start may be negative: that switches the original's adaptive clipping off.
    NON_NEGATIVE = ("weight_decay", "warmup_steps", "max_grad_norm", "validation_guidance_scale",
                    "dataloader_num_workers")

    def _check_numbers(self) -> None:
        """Ranges of every numeric flag, checked before anything is built (the message names the rule)."""
        for key in self.POSITIVE:
            value = getattr(self, key)
            require(value > 0, key, "must be positive", value)
        for key in ("validation_steps", "validation_epochs"):
            value = getattr(self, key)
            require(value is None or value > 0, key, "must be positive", value)
        for key in self.NON_NEGATIVE:
            value = getattr(self, key)
            require(value >= 0, key, "must be >= 0", value)
        for key in ("adam_beta1", "adam_beta2"):
            value = getattr(self, key)
            require(0.0 <= value < 1.0, key, "must be in [0, 1)", value)
        require(
            self.max_steps > 0 or self.max_steps == -1, "max_steps",
            "must be positive, or -1 to train for --num_train_epochs", self.max_steps,
        )
        if self.max_steps == -1:
            require(self.num_train_epochs > 0, "num_train_epochs", "must be positive", self.num_train_epochs)
        if self.validation_num_frames is not None:
            adjust_frames(self, "validation_num_frames")
