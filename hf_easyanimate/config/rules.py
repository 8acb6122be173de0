"""How the argument dataclasses check themselves: one error type, one way to state a rule, one way to adjust a value.

Everything here runs at parse time and reads nothing but the values (and the recipe's own files, such as
``--validation_images``): rules that need the checkpoint (its frame grid, its block count, whether it can be
sampled) run once it has been read, in :mod:`hf_easyanimate.assembly.preflight`.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from ..data.buckets import FrameGrid, as_frame_grid, frames_on_vae_grid

logger = logging.getLogger(__name__)

# The diffusers pipelines sample 4n + 1 frames (the V5-family MagVIT); validation videos are made with them.
PIPELINE_FRAME_STEP = 4
SIZE_GRID = 16  # VAE x8 times patch size 2


class ArgumentValidationError(ValueError):
    """A flag or recipe value breaks a rule; the message names the key and the rule."""


def require(condition: bool, key: str, rule: str, value: object) -> None:
    if not condition:
        raise ArgumentValidationError(f"--{key}={value!r}: {rule}")


def adjust(owner: object, key: str, used: int, why: str) -> None:
    """Set ``owner.key`` to ``used`` with one warning naming the value given and the value used."""
    given = getattr(owner, key)
    if given != used:
        logger.warning("--%s=%s %s; using %s, as the original trainer does.", key, given, why, used)
        setattr(owner, key, used)


def adjust_frames(owner: object, key: str) -> None:
    """A frame count the pipelines must sample: positive, on their 4n + 1 grid."""
    value = getattr(owner, key)
    require(value > 0, key, "must be a positive number of frames", value)
    adjust(owner, key, frames_on_vae_grid(value, PIPELINE_FRAME_STEP),
           f"is not on the VAE's temporal grid ({PIPELINE_FRAME_STEP}n + 1 frames)")


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


def declared(cls: type, name: str) -> tuple[str, ...]:
    """A class-level tuple of flag names (``no_effect_flags``), collected over ``cls`` and its bases.

    Such facts about flags live on the argument classes, not in field metadata: ``HfArgumentParser`` passes every
    metadata key on to ``argparse.add_argument``, so anything but argparse's own keywords would break it (for users
    who build their own parser from these dataclasses, too).
    """
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        names += [name_ for name_ in vars(klass).get(name, ()) if name_ not in names]
    return tuple(names)


def flag_sections(cls: type) -> dict[str, tuple[str, ...]]:
    """Section -> flag names (``flag_sections`` of ``cls`` and its bases): how --help and docs/flags.md group them."""
    sections: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        sections.update(vars(klass).get("flag_sections", {}))
    return sections


def warn_no_effect(arguments: object) -> None:
    """One warning per flag that is accepted but does nothing (``no_effect_flags``), when it is set."""
    fields = {field.name: field for field in dataclasses.fields(arguments)}
    for name in declared(type(arguments), "no_effect_flags"):
        field = fields[name]
        if field.default is not dataclasses.MISSING and getattr(arguments, name) != field.default:
            logger.warning("--%s has no effect here: %s", name, field.metadata.get("help", ""))


def check_combination(model_args, data_args, args) -> None:
    """Rules that span the three dataclasses, checked at parse time like the per-field ones."""
    if args.validation_images:
        require(
            model_args.train_mode == "inpaint", "validation_images",
            "reference images need --train_mode inpaint (an InP checkpoint)", args.validation_images,
        )
        require(bool(args.validation_prompts), "validation_images", "needs --validation_prompts",
                args.validation_images)
        require(
            len(args.validation_images) in (1, len(args.validation_prompts)), "validation_images",
            f"give one image for all prompts or one per prompt ({len(args.validation_prompts)})",
            args.validation_images,
        )
        for path in args.validation_images:
            require(os.path.isfile(path), "validation_images", f"file {path} does not exist", path)
    if args.eval_strategy != "no":
        require(
            bool(data_args.eval_data_meta), "eval_strategy",
            "the validation loss needs held-out clips: pass --eval_data_meta", str(args.eval_strategy.value),
        )
    elif data_args.eval_data_meta:
        logger.warning(
            "--eval_data_meta is set but --eval_strategy is 'no': no validation loss will be computed; "
            "add --eval_strategy steps --eval_steps N."
        )
    for arguments in (model_args, data_args, args):
        warn_no_effect(arguments)
