"""``DataArguments``: where the clips are and how they are sampled, bucketed and sized (docs/data.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from .rules import SIZE_GRID, adjust, require

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    """Where the clips are and how they are sampled, bucketed and sized (docs/data.md)."""

    flag_group: ClassVar[str] = "data"  # its section in --help and docs/flags.md
    no_effect_flags: ClassVar[tuple[str, ...]] = ("image_repeat_in_forward", "enable_text_encoder_in_dataloader")

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
        default=0,
        metadata={"help": "Accepted for compatibility with the original trainer; has no effect."},
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
        default=False,
        metadata={"help": "Accepted for compatibility; prompts are always encoded in the trainer."},
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
            require(value >= SIZE_GRID, key, f"must be at least {SIZE_GRID} pixels", value)
            adjust(self, key, value // SIZE_GRID * SIZE_GRID, f"is not a multiple of {SIZE_GRID} pixels")
        for key in ("token_sample_size", "video_sample_stride", "data_check_workers"):
            value = getattr(self, key)
            require(value > 0, key, "must be a positive integer", value)
        require(self.video_sample_n_frames > 0, "video_sample_n_frames", "must be a positive number of frames",
                 self.video_sample_n_frames)
        require(self.video_repeat >= 0, "video_repeat", "must be >= 0", self.video_repeat)
        require(
            self.image_repeat_in_forward >= 0, "image_repeat_in_forward", "must be >= 0", self.image_repeat_in_forward
        )
        require(0.0 <= self.text_drop_ratio <= 1.0, "text_drop_ratio", "must be in [0, 1]", self.text_drop_ratio)
        require(
            0.0 <= self.video_length_drop_start < self.video_length_drop_end <= 1.0,
            "video_length_drop_start",
            "needs 0 <= video_length_drop_start < video_length_drop_end <= 1",
            (self.video_length_drop_start, self.video_length_drop_end),
        )
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None:
                require(value > 0, key, "must be positive", value)
        require(self.bucket_remainder in ("drop", "fill"), "bucket_remainder", "must be 'drop' or 'fill'",
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
            require(
                not on, flag,
                "draws new pixels (size, crop, frames or flip) every step, but --latent_cache_dir holds one "
                "encoding per clip; turn the flag off or train without the cache", True,
            )
        if not self.fixed_frame_window:
            logger.info("--latent_cache_dir implies --fixed_frame_window (one frame window per clip).")
            self.fixed_frame_window = True
