"""Argument dataclasses: every flag of EasyAnimate's ``train_lora.py`` under its original name.

Flags that have a twin in :class:`transformers.TrainingArguments` are *not* duplicated here
(``--train_batch_size`` is ``per_device_train_batch_size``, ...); :mod:`hf_easyanimate.legacy`
translates the original spelling. Defaults that differ from ``Trainer``'s are re-declared on
:class:`EasyAnimateTrainingArguments` so a seed command line behaves like the original.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property

from transformers import TrainingArguments

from .data.buckets import FrameGrid, as_frame_grid, frames_on_vae_grid
from .training import distributed

logger = logging.getLogger(__name__)

LOSS_TYPES = ("flow", "ddpm", "sigma")
TRAIN_MODES = ("normal", "inpaint")
WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "logit_normal", "mode", "cosmap")
SAVE_LORA_FORMATS = ("peft", "easyanimate", "both")
# Every V5/V5.1 MagVIT VAE compresses time by 4 and encodes 4n + 1 frames; the pixel grid is 16
# (VAE x8 times patch size 2). The collator re-aligns to the loaded VAE's own ratio as well.
VAE_TEMPORAL_COMPRESSION = 4
SIZE_GRID = 16


class ArgumentValidationError(ValueError):
    """A flag or recipe value breaks a rule; the message names the key and the rule."""


def _require(condition: bool, key: str, rule: str, value: object) -> None:
    if not condition:
        raise ArgumentValidationError(f"--{key}={value!r}: {rule}")


def _adjust(owner: object, key: str, used: int, why: str) -> None:
    """Set ``owner.key`` to ``used`` with one warning naming the value given and the value used."""
    given = getattr(owner, key)
    if given != used:
        logger.warning("--%s=%s %s; using %s, as the original trainer does.", key, given, why, used)
        setattr(owner, key, used)


def note_off_grid_frames(n_frames: int, grid: FrameGrid | int) -> None:
    """``--video_sample_n_frames`` off the VAE's grid is kept (clips are sampled with it) and cut per batch."""
    grid = as_frame_grid(grid)
    on_grid = frames_on_vae_grid(n_frames, grid)
    if on_grid != n_frames:
        logger.warning(
            "--video_sample_n_frames=%d is not on the VAE's temporal grid (%s frames): clips are sampled with "
            "%d frames and each batch keeps the first %d, as the original trainer does.",
            n_frames, grid, n_frames, on_grid,
        )


def _adjust_frames(owner: object, key: str) -> None:
    value = getattr(owner, key)
    _require(value > 0, key, "must be a positive number of frames", value)
    _adjust(owner, key, frames_on_vae_grid(value, VAE_TEMPORAL_COMPRESSION),
            f"is not on the VAE's temporal grid ({VAE_TEMPORAL_COMPRESSION}n + 1 frames)")


@dataclass
class ModelArguments:
    """Which checkpoint to fine-tune and how the LoRA adapter is shaped."""

    pretrained_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Diffusers-layout EasyAnimate repo (local folder or Hub id), e.g. "
            "alibaba-pai/EasyAnimateV5.1-12b-zh-InP or a folder written by `hf-easyanimate make-tiny-model`."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model."})
    variant: str | None = field(default=None, metadata={"help": "Weights variant to load, e.g. 'fp16'."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models are stored."})
    config_path: str | None = field(
        default=None,
        metadata={
            "help": "The original EasyAnimate model YAML (config/easyanimate_video_*.yaml). Read for what applies to a "
            "diffusers-layout checkpoint; everything else is reported once and ignored."
        },
    )
    transformer_path: str | None = field(
        default=None, metadata={"help": "Optional transformer weights (safetensors) loaded over the base transformer."}
    )
    vae_path: str | None = field(
        default=None, metadata={"help": "Optional VAE weights (safetensors) loaded over the base VAE."}
    )
    rank: int = field(default=128, metadata={"help": "LoRA rank (dimension of the low-rank update)."})
    network_alpha: float = field(
        default=64, metadata={"help": "LoRA alpha; the update is scaled by network_alpha / rank."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Override the adapted modules: names (peft matches a name or a dotted suffix, e.g. `to_q to_v`) "
            "or one regex matched against full module paths. Default: every Linear layer of the transformer "
            "(attention, feed-forward, adaLN modulation, time/text embeddings, output head), as the original "
            "LoRANetwork adapts."
        },
    )
    init_lora_weights: str = field(
        default="true",
        metadata={
            "help": "peft LoRA initialisation: 'true' (the original's: kaiming-uniform down, zero up), 'false' "
            "(random up too: the LoRA changes the output from step 0), 'gaussian', 'pissa', ..."
        },
    )
    train_text_encoder: bool = field(
        default=False, metadata={"help": "Also train a LoRA on the text encoder (not supported yet; fails early)."}
    )
    train_mode: str = field(
        default="normal",
        metadata={"help": "'normal' (text-to-video) or 'inpaint' (image-to-video, the InP checkpoints)."},
    )
    tokenizer_max_length: int = field(
        default=256, metadata={"help": "Maximum prompt length in tokens; longer prompts are truncated."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Accepted, never passed on: components are resolved by class name inside diffusers/transformers "
            "(model_index.json), so no code from a model repo ever runs."
        },
    )

    def __post_init__(self) -> None:
        _require(self.rank > 0, "rank", "must be a positive integer", self.rank)
        _require(self.network_alpha > 0, "network_alpha", "must be positive", self.network_alpha)
        _require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)", self.lora_dropout)
        _require(self.train_mode in TRAIN_MODES, "train_mode", f"must be one of {TRAIN_MODES}", self.train_mode)
        _require(self.tokenizer_max_length > 0, "tokenizer_max_length", "must be positive", self.tokenizer_max_length)
        _require(
            not self.train_text_encoder,
            "train_text_encoder",
            "text-encoder LoRA is not supported; train the transformer LoRA only",
            self.train_text_encoder,
        )


@dataclass
class DataArguments:
    """Where the clips are and how they are sampled, bucketed and sized (docs/data.md)."""

    train_data_dir: str | None = field(
        default=None, metadata={"help": "Folder that relative `file_path` entries of the metadata resolve against."}
    )
    train_data_meta: str | None = field(
        default=None,
        metadata={
            "help": "Metadata: EasyAnimate JSON list, JSONL, CSV/TSV, Parquet, a `datasets` save_to_disk folder or "
            "a Hub dataset id. Rows hold `file_path`, `text`, `type` ('video' | 'image'; guessed from the file "
            "extension when absent) and optionally `width`, `height`, `num_frames` (or `duration` and `fps`)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N metadata rows (debugging, quick runs)."}
    )
    eval_data_meta: str | None = field(
        default=None,
        metadata={
            "help": "Held-out metadata (same format as --train_data_meta, paths relative to --train_data_dir) for "
            "the deterministic validation loss; used with --eval_strategy steps|epoch."
        },
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Truncate the eval metadata to this many rows."}
    )
    image_sample_size: int = field(
        default=512,
        metadata={
            "help": "Image side: buckets are the 512-scale aspect-ratio table scaled to it; floored to a multiple of "
            "16 at parse time."
        },
    )
    video_sample_size: int = field(
        default=512, metadata={"help": "Video side: buckets scaled to it; floored to a multiple of 16 at parse time."}
    )
    token_sample_size: int = field(
        default=512,
        metadata={
            "help": "With --training_with_video_token_length: the token budget is "
            "video_sample_n_frames x token_sample_size^2 pixels per clip."
        },
    )
    video_sample_stride: int = field(default=4, metadata={"help": "Take every N-th frame of a clip."})
    video_sample_n_frames: int = field(
        default=17,
        metadata={
            "help": "Frames sampled per training clip (fewer for short clips); each batch then keeps the first "
            "frames on the VAE's grid (4n + 1 for the V5-family MagVIT: 50 -> 49), as the original trainer does."
        },
    )
    video_repeat: int = field(
        default=0,
        metadata={
            "help": "Each video row appears N times in the index (upweights videos against images), as in the "
            "original; 0 keeps videos once (the original dropped all videos at 0)."
        },
    )
    image_repeat_in_forward: int = field(
        default=0, metadata={"help": "Accepted for compatibility with the original trainer; has no effect."}
    )
    enable_bucket: bool = field(
        default=False,
        metadata={
            "help": "Group samples by aspect ratio (40 buckets, h/w 0.25-4.0) and train on whole frames; without it "
            "every clip is centre-cropped to a video_sample_size (image_sample_size) square."
        },
    )
    bucket_remainder: str = field(
        default="drop",
        metadata={
            "help": "What happens to a bucket's samples that do not fill a whole batch in an epoch: 'drop' (the "
            "original: they wait for a later epoch, so a bucket smaller than the batch is never trained) or "
            "'fill' (topped up with other samples of the same bucket, repeated if needed, so every sample is "
            "trained every epoch)."
        },
    )
    random_ratio_crop: bool = field(
        default=False,
        metadata={"help": "With --enable_bucket: crop each batch to a randomly drawn aspect ratio (15 ratios)."},
    )
    random_frame_crop: bool = field(
        default=False,
        metadata={
            "help": "Randomly shorten each video batch to 5, 9, ... frames (the full length with p=0.9) to "
            "simulate clips of different lengths."
        },
    )
    random_hw_adapt: bool = field(
        default=False,
        metadata={
            "help": "With --enable_bucket: train each batch at a random smaller side (images from image_sample_size "
            "down to video_sample_size; videos by their size class, or by the token budget with "
            "--training_with_video_token_length)."
        },
    )
    training_with_video_token_length: bool = field(
        default=False,
        metadata={
            "help": "Trade resolution for frames at a fixed token budget: with --random_hw_adapt a video batch picks "
            "a side in video_sample_size..image_sample_size (steps of 128) and the frames that fit the budget; "
            "batches far below the budget are repeated x2 or x4."
        },
    )
    keep_all_node_same_token_length: bool = field(
        default=False,
        metadata={
            "help": "Every rank draws the same per-step numbers (one token budget per step, frames cut to fit "
            "it), so ranks spend similar time per step."
        },
    )
    random_flip: bool = field(
        default=False,
        metadata={"help": "Flip each sample horizontally with probability 0.5 (parsed but unused in the original)."},
    )
    enable_text_encoder_in_dataloader: bool = field(
        default=False, metadata={"help": "Accepted for compatibility; prompts are always encoded in the trainer."}
    )
    text_drop_ratio: float = field(
        default=0.1, metadata={"help": "Probability that a caption is replaced by '' (classifier-free guidance)."}
    )
    video_length_drop_start: float = field(
        default=0.1, metadata={"help": "Fraction of each clip skipped at the start before sampling frames."}
    )
    video_length_drop_end: float = field(
        default=0.9, metadata={"help": "Fraction of each clip after which frames are not sampled."}
    )
    fixed_frame_window: bool = field(
        default=False,
        metadata={
            "help": "Take each clip's frames from the middle of its usable range instead of a random start, so a "
            "clip always yields the same frames. Implied by --latent_cache_dir; set it on an uncached run to "
            "reproduce a cached one."
        },
    )
    latent_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of precomputed VAE latents and prompt embeddings (`hf-easyanimate precompute`). Training "
            "then reads them instead of running the VAE and text encoder; needs the random size/crop/flip flags off "
            "(docs/cache.md). Not --cache_dir, which is where downloaded models go."
        },
    )
    strict_data: bool = field(
        default=False,
        metadata={
            "help": "Open every file before training and fail before step 1, naming each bad row (missing, empty, "
            "corrupt or too-short video, unreadable image, bad text/type/file_path). Default: skip bad samples "
            "(replaced from the same bucket), count them and report them by name at the end."
        },
    )
    data_check_workers: int = field(
        default=8, metadata={"help": "Threads that open files when sizes are probed or --strict_data checks them."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache for JSON-list metadata converted to JSON Lines and, when the metadata folder is not "
            "writable, for probed sizes (default: the `datasets` cache, ~/.cache/huggingface/datasets/hf_easyanimate)."
        },
    )

    def __post_init__(self) -> None:
        for key in ("image_sample_size", "video_sample_size"):
            value = getattr(self, key)
            _require(value >= SIZE_GRID, key, f"must be at least {SIZE_GRID} pixels", value)
            _adjust(self, key, value // SIZE_GRID * SIZE_GRID, f"is not a multiple of {SIZE_GRID} pixels")
        for key in ("token_sample_size", "video_sample_stride", "data_check_workers"):
            value = getattr(self, key)
            _require(value > 0, key, "must be a positive integer", value)
        _require(self.video_sample_n_frames > 0, "video_sample_n_frames", "must be a positive number of frames",
                 self.video_sample_n_frames)
        _require(self.video_repeat >= 0, "video_repeat", "must be >= 0", self.video_repeat)
        _require(
            self.image_repeat_in_forward >= 0, "image_repeat_in_forward", "must be >= 0", self.image_repeat_in_forward
        )
        _require(0.0 <= self.text_drop_ratio <= 1.0, "text_drop_ratio", "must be in [0, 1]", self.text_drop_ratio)
        _require(
            0.0 <= self.video_length_drop_start < self.video_length_drop_end <= 1.0,
            "video_length_drop_start",
            "needs 0 <= video_length_drop_start < video_length_drop_end <= 1",
            (self.video_length_drop_start, self.video_length_drop_end),
        )
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None:
                _require(value > 0, key, "must be positive", value)
        _require(self.bucket_remainder in ("drop", "fill"), "bucket_remainder", "must be 'drop' or 'fill'",
                 self.bucket_remainder)
        for flag in ("random_hw_adapt", "random_ratio_crop"):
            if getattr(self, flag) and not self.enable_bucket:
                logger.warning("--%s only acts with --enable_bucket (as in the original); ignored.", flag)
        if self.latent_cache_dir:
            self._check_cacheable()
        if self.training_with_video_token_length and not (self.enable_bucket and self.random_hw_adapt):
            logger.warning(
                "--training_with_video_token_length picks sizes and frames only with --enable_bucket and "
                "--random_hw_adapt (as in the original); here it only repeats batches far below the token budget."
            )

    def _check_cacheable(self) -> None:
        """The cache holds one encoding per clip and size: flags that redraw pixels every step cannot use it."""
        random_flags = {
            "random_flip": self.random_flip,
            "random_frame_crop": self.random_frame_crop,
            "random_hw_adapt": self.random_hw_adapt and self.enable_bucket,
            "random_ratio_crop": self.random_ratio_crop and self.enable_bucket,
            "keep_all_node_same_token_length": self.keep_all_node_same_token_length,
        }
        for flag, on in random_flags.items():
            _require(
                not on, flag,
                "draws new pixels (size, crop, frames or flip) every step, but --latent_cache_dir holds one "
                "encoding per clip; turn the flag off or train without the cache", True,
            )
        if not self.fixed_frame_window:
            logger.info("--latent_cache_dir implies --fixed_frame_window (one frame window per clip).")
            self.fixed_frame_window = True


# Sections of EasyAnimateTrainingArguments' own flags in `--help` and docs/flags.md; the others are "run".
OBJECTIVE_FLAGS = (
    "loss_type", "prediction_type", "train_sampling_steps", "uniform_sampling", "weighting_scheme", "logit_mean",
    "logit_std", "mode_scale", "snr_loss", "noise_offset", "input_perturbation", "noise_share_in_frames",
    "noise_share_in_frames_ratio", "motion_sub_loss", "motion_sub_loss_ratio",
)
MEMORY_FLAGS = ("vae_mini_batch", "low_vram", "enable_xformers_memory_efficient_attention", "multi_stream",
                "base_weight_dtype", "text_encoder_dtype", "blocks_to_swap", "activation_offload")
STORAGE_DTYPE_NAMES = ("float8_e4m3fn", "float8_e5m2", "bfloat16", "float16")


@dataclass
class EasyAnimateTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus EasyAnimate's objective, memory and validation flags."""

    # --- defaults re-declared so the original command lines keep their meaning ---------------
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

    # --- objective ----------------------------------------------------------------------------
    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "Diffusion objective: 'flow' (V5.1), 'ddpm' (V5, V4) or 'sigma' (V3, V2). Default: the one the "
            "checkpoint was trained with, read from its scheduler (FlowMatch: flow; DDPM/DDIM: ddpm; the V3/V2 "
            "learned-variance transformers: sigma)."
        },
    )
    prediction_type: str | None = field(
        default=None,
        metadata={
            "help": "ddpm only: 'epsilon' or 'v_prediction'; default: the checkpoint scheduler's (the original "
            "always used the scheduler's). No effect with flow or sigma."
        },
    )
    train_sampling_steps: int = field(
        default=1000,
        metadata={
            "help": "ddpm and sigma: size of the discrete timestep range [0, N) (sigma: the diffusion is respaced "
            "to N steps; ddpm: the indices are the DDPM timesteps). No effect with flow."
        },
    )
    uniform_sampling: bool = field(
        default=False,
        metadata={
            "help": "Split timesteps across ranks so each global batch spans [0, train_sampling_steps). "
            "No effect with --loss_type flow (as in the original, flow draws its own timesteps)."
        },
    )
    weighting_scheme: str = field(
        default="none",
        metadata={"help": f"flow only: timestep density / loss weighting, one of {WEIGHTING_SCHEMES}."},
    )
    logit_mean: float = field(default=0.0, metadata={"help": "flow, logit_normal scheme: mean."})
    logit_std: float = field(default=1.0, metadata={"help": "flow, logit_normal scheme: standard deviation."})
    mode_scale: float = field(default=1.29, metadata={"help": "flow, mode scheme: scale."})
    snr_loss: bool = field(
        default=False,
        metadata={"help": "sigma only: compare x0 instead of epsilon for timesteps <= 249. No effect otherwise."},
    )
    noise_offset: float = field(
        default=0.0,
        metadata={
            "help": "Offset noise: add noise_offset x N(0, 1) per sample and channel, constant over frames and "
            "pixels. 0 disables (the original parses this flag but never applies it)."
        },
    )
    input_perturbation: float = field(
        default=0.0,
        metadata={
            "help": "Noise the model input with noise + input_perturbation x N(0, 1) while the target keeps the "
            "clean noise. 0 disables (the original parses this flag but never applies it)."
        },
    )
    noise_share_in_frames: bool = field(
        default=False, metadata={"help": "Correlate noise across frames: e_i = r * e_(i-1) + (1 - r) * e_i."}
    )
    noise_share_in_frames_ratio: float = field(default=0.5, metadata={"help": "r of --noise_share_in_frames."})
    motion_sub_loss: bool = field(
        default=False,
        metadata={
            "help": "flow and ddpm: add a loss on frame differences (clips with more than 2 latent frames). "
            "No effect with sigma."
        },
    )
    motion_sub_loss_ratio: float = field(default=0.25, metadata={"help": "Weight of --motion_sub_loss."})

    # --- optimisation / memory --------------------------------------------------------------
    vae_mini_batch: int = field(default=32, metadata={"help": "Encode the batch with the VAE in chunks of N clips."})
    scale_lr: bool = field(
        default=False,
        metadata={"help": "Scale the learning rate by grad-accumulation x batch size x number of processes."},
    )
    use_came: bool = field(default=False, metadata={"help": "Use the CAME optimizer (needs `came_pytorch`)."})
    use_ema: bool = field(default=False, metadata={"help": "Accepted for compatibility; EMA of a LoRA is not used."})
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
        default=5, metadata={"help": "Clip norm at step 0, as a multiple of max_grad_norm (see abnormal_norm_clip_start)."}
    )
    low_vram: bool = field(
        default=False,
        metadata={"help": "Keep the VAE and text encoder on CPU; move them to the accelerator only to encode."},
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
    multi_stream: bool = field(default=False, metadata={"help": "Accepted for compatibility; has no effect."})
    base_weight_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Store the frozen transformer weights in this dtype and compute in the training dtype (bf16/fp16): "
            f"one of {', '.join(STORAGE_DTYPE_NAMES)}. float8 halves the base weights of a bf16 run (12B: 22 -> 12 GiB); "
            "norms, embeddings, input/output projections and the LoRA stay in the training dtype (docs/memory.md). "
            "Saves at the step's peak with --gradient_checkpointing."
        },
    )
    text_encoder_dtype: str | None = field(
        default=None,
        metadata={"help": "The same for the text encoder(s), for runs without --latent_cache_dir: "
                          f"one of {', '.join(STORAGE_DTYPE_NAMES)}."},
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
        metadata={"help": "Keep the tensors saved for backward (with --gradient_checkpointing: each block's input) in "
                          "pinned CPU memory instead of on the GPU (torch.autograd.graph.save_on_cpu)."},
    )

    # --- run ---------------------------------------------------------------------------------
    tracker_project_name: str = field(
        default="text2video-fine-tune", metadata={"help": "Project name for trackers (original flag)."}
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
            "at start-up, only when --validation_prompts is set; 'none' turns these metrics off. "
            "`hf-easyanimate make-tiny-clip DIR` writes a tiny one for demos."
        },
    )
    eval_timesteps: int = field(
        default=4,
        metadata={
            "help": "Deterministic validation loss: each eval clip is scored at this many timesteps spread evenly "
            "over the training range, with noise from --seed, so eval_loss is comparable across steps. It is also "
            "split by noise level into eval_loss_low_noise / _mid_noise / _high_noise (thirds of the range; the "
            "default 4 timesteps put 1, 2 and 1 in them)."
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
        self._configure_launch()
        _require(self.loss_type in (None, *LOSS_TYPES), "loss_type", f"must be one of {LOSS_TYPES}", self.loss_type)
        _require(
            self.weighting_scheme in WEIGHTING_SCHEMES,
            "weighting_scheme",
            f"must be one of {WEIGHTING_SCHEMES}",
            self.weighting_scheme,
        )
        _require(
            self.prediction_type in (None, "epsilon", "v_prediction"),
            "prediction_type",
            "must be 'epsilon' or 'v_prediction'",
            self.prediction_type,
        )
        _require(
            self.save_lora_format in SAVE_LORA_FORMATS,
            "save_lora_format",
            f"must be one of {SAVE_LORA_FORMATS}",
            self.save_lora_format,
        )
        self._check_numbers()
        _require(
            0.0 <= self.motion_sub_loss_ratio <= 1.0, "motion_sub_loss_ratio", "must be in [0, 1]",
            self.motion_sub_loss_ratio,
        )
        _require(
            0.0 <= self.noise_share_in_frames_ratio <= 1.0, "noise_share_in_frames_ratio", "must be in [0, 1]",
            self.noise_share_in_frames_ratio,
        )
        if self.loss_type is not None:  # else resolved from the checkpoint, then checked (train.py)
            self.warn_inapplicable_flags()
        self._resolve_validation_schedule()
        self._check_optimizer_available()
        self._check_memory_flags()
        super().__post_init__()
        if self.scale_lr:
            self._scale_learning_rate()

    def _check_memory_flags(self) -> None:
        """The memory flags' own rules (the block count is checked against the model in check_combination)."""
        from .memory.storage import StorageDtypeError, storage_dtype

        for key in ("base_weight_dtype", "text_encoder_dtype"):
            value = getattr(self, key)
            try:
                storage_dtype(value)
            except StorageDtypeError as error:
                raise ArgumentValidationError(f"--{key}={value!r}: {error}") from None
        _require(self.blocks_to_swap >= 0, "blocks_to_swap", "must be >= 0 (0 keeps every block on the GPU)",
                 self.blocks_to_swap)
        if self.blocks_to_swap:
            _require(
                bool(self.activation_checkpointing or self.gradient_checkpointing), "blocks_to_swap",
                "needs --gradient_checkpointing: without it autograd keeps every swapped block's weights on the GPU "
                "until the backward pass, so nothing is saved", self.blocks_to_swap,
            )
            _require(
                not self.deepspeed, "blocks_to_swap",
                "is not supported with DeepSpeed (ZeRO partitions and moves parameters itself); drop --deepspeed, or "
                "use ZeRO's own offload in the DeepSpeed config", self.blocks_to_swap,
            )

    # --- objective-dependent notes ---------------------------------------------------------------
    def warn_inapplicable_flags(self) -> None:
        """One warning per flag that the chosen --loss_type ignores (called once the loss type is known)."""
        if self.uniform_sampling and self.loss_type == "flow":
            logger.warning(
                "--uniform_sampling has no effect with --loss_type flow: flow draws its timesteps from "
                "--weighting_scheme's density, as the original trainer does."
            )
        if self.loss_type != "flow" and self.weighting_scheme != "none":
            logger.warning("--weighting_scheme only applies to --loss_type flow; ignored for %s.", self.loss_type)
        if self.snr_loss and self.loss_type != "sigma":
            logger.warning("--snr_loss only applies to --loss_type sigma; ignored for %s.", self.loss_type)
        for key, default in (("logit_mean", 0.0), ("logit_std", 1.0), ("mode_scale", 1.29)):
            if self.loss_type != "flow" and getattr(self, key) != default:
                logger.warning("--%s only applies to --loss_type flow; ignored for %s.", key, self.loss_type)
        if self.prediction_type is not None and self.loss_type != "ddpm":
            logger.warning("--prediction_type only applies to --loss_type ddpm; ignored for %s.", self.loss_type)
        if self.train_sampling_steps != 1000 and self.loss_type == "flow":
            logger.warning(
                "--train_sampling_steps has no effect with --loss_type flow (the scheduler's grid is used)."
            )
        if self.motion_sub_loss and self.loss_type == "sigma":
            logger.warning("--motion_sub_loss has no effect with --loss_type sigma, as in the original trainer.")

    def _resolve_validation_schedule(self) -> None:
        """Either schedule alone is the only one; neither given means the original's two (2000 steps, 5 epochs)."""
        if self.validation_steps is None and self.validation_epochs is None:
            self.validation_steps, self.validation_epochs = 2000, 5

    # --- launch / device set-up -----------------------------------------------------------------
    def _configure_launch(self) -> None:
        """Adopt the launcher's DeepSpeed config, refuse --use_deepspeed without one, and pick CPU DDP when needed."""
        launcher_config = distributed.launcher_deepspeed_config()
        if launcher_config and self.deepspeed and isinstance(self.deepspeed, str):
            if not distributed.same_file(launcher_config, self.deepspeed):
                raise ArgumentValidationError(
                    f"--deepspeed={self.deepspeed!r} and accelerate launch --deepspeed_config_file={launcher_config!r} "
                    "name different DeepSpeed configs; keep one of them."
                )
        if launcher_config and not self.deepspeed:
            # Trainer then fills the "auto" values from these arguments, exactly as with --deepspeed.
            self.deepspeed = launcher_config
        _require(
            not self.use_deepspeed or distributed.deepspeed_configured(self.deepspeed),
            "use_deepspeed",
            "DeepSpeed is not configured for this run. Launch with `accelerate launch --use_deepspeed "
            "--deepspeed_config_file recipes/deepspeed/zero2.json -m hf_easyanimate.train ...`, or add "
            "`--deepspeed recipes/deepspeed/zero2.json`",
            self.use_deepspeed,
        )
        launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
        if launcher_precision in ("bf16", "fp16"):
            # As the original: `accelerate launch --mixed_precision bf16` means bf16 even without the script flag.
            other = "fp16" if launcher_precision == "bf16" else "bf16"
            _require(
                not getattr(self, other),
                other,
                f"contradicts `accelerate launch --mixed_precision {launcher_precision}`; keep one precision",
                True,
            )
            setattr(self, launcher_precision, True)
        # Said once by the main process after logging is set up (train.py), not by every rank at parse time.
        self.launch_notes: list[str] = []
        if distributed.needs_cpu_process_group() and not self.deepspeed and not self.use_cpu:
            self.launch_notes.append(
                f"{distributed.launched_world_size()} processes were launched but no GPU is available: training with "
                "CPU DDP over gloo (--use_cpu)."
            )
            self.use_cpu = True
        if self.bf16 and not self.use_cpu and not distributed.has_accelerator():
            # Trainer refuses bf16 without a GPU unless --use_cpu; the seed lines say --mixed_precision bf16.
            self.launch_notes.append("no GPU: training on the CPU with bf16 autocast (--mixed_precision bf16).")
            self.use_cpu = True
        note = distributed.single_process_cpu_launch()
        if note:
            logger.warning(note)

    @cached_property
    def _setup_devices(self):
        """Trainer's device set-up, except that DeepSpeed on a GPU-less machine gets a gloo process group.

        ``TrainingArguments`` passes no backend to accelerate when DeepSpeed is on, and without one accelerate
        counts a single process. Going through the non-DeepSpeed branch with ``ddp_backend=gloo`` and
        ``ACCELERATE_USE_DEEPSPEED`` set makes accelerate start DeepSpeed's communication on gloo with the
        real world size; the DeepSpeed config is still applied by ``__post_init__`` afterwards.
        """
        if not (self.deepspeed and distributed.needs_cpu_process_group()):
            return TrainingArguments._setup_devices.func(self)
        saved = (self.deepspeed, self.use_cpu, self.ddp_backend, os.environ.get("ACCELERATE_USE_DEEPSPEED"))
        self.deepspeed, self.use_cpu, self.ddp_backend = None, False, self.ddp_backend or "gloo"
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        try:
            return TrainingArguments._setup_devices.func(self)
        finally:
            self.deepspeed, self.use_cpu, self.ddp_backend = saved[0], saved[1], saved[2]
            if saved[3] is None:
                os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
            else:
                os.environ["ACCELERATE_USE_DEEPSPEED"] = saved[3]

    # --- optimizer ----------------------------------------------------------------------------
    def _check_optimizer_available(self) -> None:
        optim = str(getattr(self.optim, "value", self.optim))
        if "bnb" in optim or "8bit" in optim:
            _require(
                importlib.util.find_spec("bitsandbytes") is not None,
                "optim",
                "8-bit Adam (--use_8bit_adam) needs bitsandbytes: `pip install bitsandbytes` "
                "(or `pip install hf_easyanimate[lowmem]`), or drop the flag",
                optim,
            )
        if self.use_came:
            _require(
                importlib.util.find_spec("came_pytorch") is not None,
                "use_came",
                "the CAME optimizer needs came_pytorch: `pip install came-pytorch` (or hf_easyanimate[came])",
                self.use_came,
            )
            _require(
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

    def _check_numbers(self) -> None:
        """Ranges of every numeric flag, checked before anything is built (the message names the rule)."""
        positive = ("learning_rate", "train_sampling_steps", "vae_mini_batch", "per_device_train_batch_size",
                    "per_device_eval_batch_size", "gradient_accumulation_steps", "adam_epsilon", "logit_std",
                    "initial_grad_norm_ratio", "validation_num_inference_steps", "eval_timesteps",
                    "max_consecutive_nonfinite")
        for key in positive:
            value = getattr(self, key)
            _require(value > 0, key, "must be positive", value)
        for key in ("validation_steps", "validation_epochs"):
            value = getattr(self, key)
            _require(value is None or value > 0, key, "must be positive", value)
        # abnormal_norm_clip_start may be negative: that switches the original's adaptive clipping off.
        non_negative = ("weight_decay", "warmup_steps", "max_grad_norm", "noise_offset", "input_perturbation",
                        "validation_guidance_scale", "dataloader_num_workers")
        for key in non_negative:
            value = getattr(self, key)
            _require(value >= 0, key, "must be >= 0", value)
        for key in ("adam_beta1", "adam_beta2"):
            value = getattr(self, key)
            _require(0.0 <= value < 1.0, key, "must be in [0, 1)", value)
        _require(
            self.max_steps > 0 or self.max_steps == -1, "max_steps",
            "must be positive, or -1 to train for --num_train_epochs", self.max_steps,
        )
        if self.max_steps == -1:
            _require(self.num_train_epochs > 0, "num_train_epochs", "must be positive", self.num_train_epochs)
        _require(
            self.eval_timesteps <= self.train_sampling_steps, "eval_timesteps",
            f"must be <= --train_sampling_steps ({self.train_sampling_steps})", self.eval_timesteps,
        )
        if self.validation_num_frames is not None:
            _adjust_frames(self, "validation_num_frames")


def check_blocks_to_swap(model_args: ModelArguments, blocks_to_swap: int) -> None:
    """``--blocks_to_swap`` at most the transformer's block count (from its config, when it can be read here)."""
    from .memory.planner import transformer_block_count

    count = transformer_block_count(model_args.pretrained_model_name_or_path, model_args.revision,
                                    model_args.cache_dir)
    if count is not None:
        _require(blocks_to_swap <= count, "blocks_to_swap",
                 f"this transformer has {count} blocks; swap at most {count}", blocks_to_swap)


def check_combination(model_args: ModelArguments, data_args: DataArguments, args: EasyAnimateTrainingArguments) -> None:
    """Rules that span the three dataclasses, checked at parse time like the per-field ones."""
    from .models.loading import LEGACY_VERSIONS, detect_original_version
    from .models.vae import local_frame_grid

    version, source = detect_original_version(model_args.pretrained_model_name_or_path, model_args.config_path)
    if args.blocks_to_swap:
        check_blocks_to_swap(model_args, args.blocks_to_swap)
    if version in (None, "v5", "v5.1"):
        # MagVIT (V5 family) encodes 4n + 1 frames; the V2-V4 VAEs chunk by their mini_batch_encoder.
        note_off_grid_frames(data_args.video_sample_n_frames, VAE_TEMPORAL_COMPRESSION)
    elif version in LEGACY_VERSIONS:
        _require(
            not args.validation_prompts, "validation_prompts",
            f"EasyAnimate {version.upper()} (detected from {source}) is trained without sampling: its VAE decoder "
            "is not ported, so validation videos cannot be made. Drop --validation_prompts (and --validation_images); "
            "--eval_data_meta with --eval_strategy steps still gives a validation loss",
            args.validation_prompts,
        )
        grid = local_frame_grid(model_args.pretrained_model_name_or_path)
        if grid is not None:
            note_off_grid_frames(data_args.video_sample_n_frames, grid)
    if args.validation_images:
        _require(
            model_args.train_mode == "inpaint", "validation_images",
            "reference images need --train_mode inpaint (an InP checkpoint)", args.validation_images,
        )
        _require(bool(args.validation_prompts), "validation_images", "needs --validation_prompts",
                 args.validation_images)
        _require(
            len(args.validation_images) in (1, len(args.validation_prompts)), "validation_images",
            f"give one image for all prompts or one per prompt ({len(args.validation_prompts)})",
            args.validation_images,
        )
        for path in args.validation_images:
            _require(os.path.isfile(path), "validation_images", f"file {path} does not exist", path)
    if args.eval_strategy != "no":
        _require(
            bool(data_args.eval_data_meta), "eval_strategy",
            "the validation loss needs held-out clips: pass --eval_data_meta", str(args.eval_strategy.value),
        )
    elif data_args.eval_data_meta:
        logger.warning(
            "--eval_data_meta is set but --eval_strategy is 'no': no validation loss will be computed; "
            "add --eval_strategy steps --eval_steps N."
        )
