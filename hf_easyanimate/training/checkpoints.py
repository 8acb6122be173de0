"""Is a ``checkpoint-N`` folder fit to resume from? Every file Trainer will read is opened first, the way it will be
read (the state as JSON, the adapter as safetensors, optimizer / scheduler / RNG state with ``weights_only``), so a
damaged checkpoint is found before the run commits to it, named with the file and the reason.

A checkpoint that only lacks optimizer, scheduler or RNG state can still be resumed, but not exactly (a fresh
optimizer and schedule, other random draws): that is a warning, not a refusal.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

from ..utils.files import safetensors_problem, torch_file_problem

TRAINER_STATE = "trainer_state.json"
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
# What makes a resume exact beside the weights; Trainer resumes without them, from a fresh state.
RESUME_STATE = ("optimizer.pt", "scheduler.pt")


@dataclass
class CheckpointReport:
    """What is wrong with one checkpoint: ``problems`` (file, reason) refuse it, ``missing_state`` only warns."""

    path: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    missing_state: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    def reason(self) -> str:
        """``checkpoint-4/trainer_state.json: not valid JSON (...)``, the first problem (and how many more)."""
        name, why = self.problems[0]
        more = f" (and {len(self.problems) - 1} more damaged file(s))" if len(self.problems) > 1 else ""
        return f"{os.path.join(self.path, name)}: {why}{more}"

    def inexact(self) -> str | None:
        if not self.missing_state:
            return None
        return (f"{self.path} has no {', '.join(self.missing_state)}: resuming with a fresh optimizer / LR schedule / "
                "random state, so the run is no longer exactly the uninterrupted one")


def _state_problem(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return "missing (the save did not finish)"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return f"not valid JSON ({error}): truncated or overwritten"
    if not isinstance(state, dict):
        return f"expected a JSON object, found {type(state).__name__}"
    step = state.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"global_step is {step!r}, not a step count"
    return None


def _adapter_problem(folder: str) -> str | None:
    """The peft adapter: present, readable, LoRA pairs whose shapes agree with each other and with the config's rank."""
    path = os.path.join(folder, ADAPTER_WEIGHTS)
    problem = safetensors_problem(path)
    if problem is not None:
        return "missing (every checkpoint holds the peft adapter)" if problem == "no such file" else problem
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    downs = {key[: -len("lora_A.weight")]: shape for key, shape in shapes.items() if key.endswith("lora_A.weight")}
    ups = {key[: -len("lora_B.weight")]: shape for key, shape in shapes.items() if key.endswith("lora_B.weight")}
    if not downs or set(downs) != set(ups):
        return "holds no complete LoRA (lora_A / lora_B pairs): not an adapter this trainer wrote"
    ranks = {shape[0] for shape in downs.values()} | {shape[-1] for shape in ups.values()}
    rank = _config_rank(folder)
    if len(ranks) != 1 or (rank is not None and ranks != {rank}):
        return f"LoRA ranks {sorted(ranks)} disagree with each other or with {ADAPTER_CONFIG} (r={rank})"
    return None


def _config_rank(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, ADAPTER_CONFIG), encoding="utf-8") as handle:
            return int(json.load(handle).get("r"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def inspect_checkpoint(path: str) -> CheckpointReport:
    """Every file of ``path`` that resuming reads, opened as it will be read."""
    report = CheckpointReport(path)
    problem = _state_problem(os.path.join(path, TRAINER_STATE))
    if problem:
        report.problems.append((TRAINER_STATE, problem))
    problem = _adapter_problem(path)
    if problem:
        report.problems.append((ADAPTER_WEIGHTS, problem))
    if _config_rank(path) is None:
        report.problems.append((ADAPTER_CONFIG, "missing, or not a peft adapter config"))
    deepspeed = bool(glob.glob(os.path.join(path, "global_step*")))  # its optimizer state lives in that folder
    for name in RESUME_STATE:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            if not (deepspeed and name == "optimizer.pt"):
                report.missing_state.append(name)
            continue
        problem = torch_file_problem(file)
        if problem:
            report.problems.append((name, problem))
    rng_files = sorted(glob.glob(os.path.join(path, "rng_state*.pth")))
    if not rng_files:
        report.missing_state.append("rng_state.pth")
    for file in rng_files:
        problem = torch_file_problem(file)
        if problem:
            report.problems.append((os.path.basename(file), problem))
    return report
