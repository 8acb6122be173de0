"""Guards that keep a run from silently breaking: non-finite losses and interrupted checkpoint writes.

The non-finite guard works with ``Trainer``'s own loop: the trainer asks :meth:`NonFiniteLossGuard.should_skip`
after the forward pass (every rank gets the same answer, so DDP/DeepSpeed collectives stay in step) and skips
the backward pass of a poisoned accumulation window; with no gradients the optimizer step changes nothing.
The callback half counts poisoned updates at ``on_step_end`` and stops training after too many in a row,
before any checkpoint of that step is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss stayed NaN/inf; the message says where and what to do."""


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (disk full, permissions...); the partial folder was removed."""


def max_over_ranks(value: int, device: torch.device | str = "cpu") -> int:
    """The largest ``value`` over all processes (a MAX all-reduce); just ``value`` without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return int(value)
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.tensor([float(value)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True if ``flag`` is true on any process (a MAX all-reduce); just ``flag`` without torch.distributed."""
    return max_over_ranks(1 if flag else 0, device) > 0


class SkipUpdate(Exception):
    """Raised between forward and backward to leave a poisoned micro-batch without a backward pass."""

    def __init__(self, loss: torch.Tensor) -> None:
        super().__init__("non-finite loss")
        self.loss = loss


@dataclass
class NonFiniteLossGuard(TrainerCallback):
    """Counts optimizer updates skipped for a NaN/inf loss and stops after ``max_consecutive`` in a row."""

    max_consecutive: int = 5
    total: int = 0
    consecutive: int = 0
    streak_start: int | None = None
    window_poisoned: bool = False
    tripped_at: int | None = None
    skipped_steps: list[int] = field(default_factory=list)

    def should_skip(self, loss: torch.Tensor) -> bool:
        """Whether this micro-batch's update must be skipped; the same answer on every rank."""
        return any_rank(not bool(torch.isfinite(loss.detach()).all()), loss.device)

    def on_step_end(self, args, state, control, **kwargs):
        if not self.window_poisoned:
            self.consecutive, self.streak_start = 0, None
            return control
        self.window_poisoned = False
        self.total += 1
        self.consecutive += 1
        self.skipped_steps.append(state.global_step)
        if self.streak_start is None:
            self.streak_start = state.global_step
        logger.warning(
            "step %d: non-finite loss, optimizer update skipped (%d in a row, %d in all)",
            state.global_step, self.consecutive, self.total,
        )
        if self.consecutive >= self.max_consecutive:
            # This callback runs after DefaultFlowCallback: cancel the save/eval it may have scheduled, so the
            # checkpoints on disk stay the ones written before the streak ended the run.
            self.tripped_at = state.global_step
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control

    def message(self, last_checkpoint: str | None) -> str:
        where = (
            f"the last checkpoint is {last_checkpoint} (resume with --resume_from_checkpoint {last_checkpoint})"
            if last_checkpoint
            else "no checkpoint had been written yet"
        )
        return (
            f"training stopped at step {self.tripped_at}: the loss was NaN or inf for {self.consecutive} optimizer "
            f"steps in a row (steps {self.streak_start}-{self.tripped_at}; --max_consecutive_nonfinite "
            f"{self.max_consecutive}); {self.total} updates were skipped in all, so the weights are those of step "
            f"{self.streak_start - 1}. {where}. Try a lower --learning_rate or --max_grad_norm, or --bf16 instead "
            "of --fp16, and check the data for broken clips."
        )
