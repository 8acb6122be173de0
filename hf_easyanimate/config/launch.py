"""How a launch (torchrun, ``accelerate launch``, DeepSpeed) becomes Trainer's process group and precision.

Trainer handles GPUs; some launches go wrong without help, on machines without one (CI, laptops) above all:

* ``torchrun --nproc_per_node N`` without ``--use_cpu``: accelerate initialises a gloo group but reports
  "not distributed", so every rank silently trains alone. We switch such runs to CPU DDP (gloo).
* DeepSpeed: ``TrainingArguments`` does not pass a backend when DeepSpeed is on, and accelerate then
  counts one process. We give it gloo so ZeRO-2 sees the real world size.
* ``accelerate launch --use_deepspeed --deepspeed_config_file F`` and ``--mixed_precision bf16`` are the launcher's
  flags in the seed lines; the run adopts them as ``--deepspeed F`` and ``--bf16``.

Everything else (GPU launches) goes through Trainer untouched. :func:`configure_launch` runs in the training
arguments' ``__post_init__``; :func:`setup_devices` is their ``_setup_devices``.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import TrainingArguments

from .rules import ArgumentValidationError, require

logger = logging.getLogger(__name__)


def launched_world_size() -> int:
    """Number of processes the launcher started (1 for a plain ``python -m``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator() -> bool:
    """True if a device that Trainer would use for distributed training is present."""
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def launcher_deepspeed_config() -> str | None:
    """The config file ``accelerate launch --use_deepspeed --deepspeed_config_file X`` handed to us, if any."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return None
    return os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE") or ""


def deepspeed_configured(deepspeed: str | dict | None) -> bool:
    """DeepSpeed is on if Trainer got a config (``--deepspeed``) or the launcher enabled it."""
    return bool(deepspeed) or launcher_deepspeed_config() is not None


def needs_cpu_process_group() -> bool:
    """Several processes were launched but there is no GPU: they must talk over gloo on CPU."""
    return launched_world_size() > 1 and not has_accelerator()


def single_process_cpu_launch() -> str | None:
    """``accelerate launch --cpu --num_processes N`` starts ONE process (its simple launcher); say so.

    accelerate then sets ``MASTER_ADDR`` (it was asked for several processes) but no ``WORLD_SIZE``.
    """
    cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true"
    if cpu and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        return (
            "accelerate launch --cpu with --num_processes > 1 started a single process (accelerate's --cpu is "
            "one process; its --multi_cpu mode is only reachable through `accelerate config`). For N CPU processes "
            "use `accelerate launch --multi_gpu --num_processes N` (without a GPU it starts N CPU processes) or "
            "`torchrun --nproc_per_node N -m hf_easyanimate.train ...`."
        )
    return None


def same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def load_deepspeed_config(config: str | dict) -> dict:
    if isinstance(config, dict):
        return config
    with open(config, encoding="utf-8") as handle:
        return json.load(handle)


def _adopt_launcher_deepspeed(args) -> None:
    launcher_config = launcher_deepspeed_config()
    if launcher_config and args.deepspeed and isinstance(args.deepspeed, str):
        if not same_file(launcher_config, args.deepspeed):
            raise ArgumentValidationError(
                f"--deepspeed={args.deepspeed!r} and accelerate launch --deepspeed_config_file={launcher_config!r} "
                "name different DeepSpeed configs; keep one of them."
            )
    if launcher_config and not args.deepspeed:
        # Trainer then fills the "auto" values from these arguments, exactly as with --deepspeed.
        args.deepspeed = launcher_config
    require(
        not args.use_deepspeed or deepspeed_configured(args.deepspeed),
        "use_deepspeed",
        "DeepSpeed is not configured for this run. Launch with `accelerate launch --use_deepspeed "
        "--deepspeed_config_file recipes/deepspeed/zero2.json -m hf_easyanimate.train ...`, or add "
        "`--deepspeed recipes/deepspeed/zero2.json`",
        args.use_deepspeed,
    )


def _adopt_launcher_precision(args) -> None:
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if launcher_precision in ("bf16", "fp16"):
        # As the original: `accelerate launch --mixed_precision bf16` means bf16 even without the script flag.
        other = "fp16" if launcher_precision == "bf16" else "bf16"
        require(
            not getattr(args, other),
            other,
            f"contradicts `accelerate launch --mixed_precision {launcher_precision}`; keep one precision",
            True,
        )
        setattr(args, launcher_precision, True)


def configure_launch(args) -> None:
    """Adopt the launcher's DeepSpeed config and precision, refuse --use_deepspeed without one, pick CPU DDP when
    needed. Notes for the user go to ``args.launch_notes``: the main process says them once logging is set up, not
    every rank at parse time."""
    _adopt_launcher_deepspeed(args)
    _adopt_launcher_precision(args)
    args.launch_notes = []
    if needs_cpu_process_group() and not args.deepspeed and not args.use_cpu:
        args.launch_notes.append(
            f"{launched_world_size()} processes were launched but no GPU is available: training with "
            "CPU DDP over gloo (--use_cpu)."
        )
        args.use_cpu = True
    if args.bf16 and not args.use_cpu and not has_accelerator():
        # Trainer refuses bf16 without a GPU unless --use_cpu; the seed lines say --mixed_precision bf16.
        args.launch_notes.append("no GPU: training on the CPU with bf16 autocast (--mixed_precision bf16).")
        args.use_cpu = True
    note = single_process_cpu_launch()
    if note:
        logger.warning(note)


def setup_devices(args):
    """Trainer's device set-up, except that DeepSpeed on a GPU-less machine gets a gloo process group.

    ``TrainingArguments`` passes no backend to accelerate when DeepSpeed is on, and without one accelerate
    counts a single process. Going through the non-DeepSpeed branch with ``ddp_backend=gloo`` and
    ``ACCELERATE_USE_DEEPSPEED`` set makes accelerate start DeepSpeed's communication on gloo with the
    real world size; the DeepSpeed config is still applied by ``__post_init__`` afterwards.
    """
    if not (args.deepspeed and needs_cpu_process_group()):
        return TrainingArguments._setup_devices.func(args)
    saved = (args.deepspeed, args.use_cpu, args.ddp_backend, os.environ.get("ACCELERATE_USE_DEEPSPEED"))
    args.deepspeed, args.use_cpu, args.ddp_backend = None, False, args.ddp_backend or "gloo"
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        return TrainingArguments._setup_devices.func(args)
    finally:
        args.deepspeed, args.use_cpu, args.ddp_backend = saved[0], saved[1], saved[2]
        if saved[3] is None:
            os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        else:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = saved[3]
