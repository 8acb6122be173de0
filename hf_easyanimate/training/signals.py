"""Graceful stop: Ctrl-C, SIGTERM (cluster preemption, ``scancel``, torchrun's shutdown) end a run cleanly.

The first SIGINT/SIGTERM lets the current optimizer step finish; at its end every rank learns of it (a MAX
all-reduce, so all ranks stop at the same step, even when only one got the signal), Trainer writes
``checkpoint-N``, training stops, the LoRA is saved at the top of ``output_dir``, and the process exits with
128 + the signal number (130 / 143) and one line saying how to resume. A second Ctrl-C aborts at once.

Two details make this hold on real launchers:

* a terminal's Ctrl-C reaches torchrun *and* its workers, and torchrun forwards it again a moment later; a
  repeat within :data:`REPEAT_GRACE` seconds is the same keypress, not a request to abort;
* data-loader workers get the signal too and would die mid-epoch (the main process then fails with "worker
  exited unexpectedly"); they ignore SIGINT/SIGTERM and end through the loader's own shutdown instead.

Trainer's ``TrainerControl`` has no stop-and-save hook for signals, hence this callback.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import seed_worker

from .guards import max_over_ranks

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_GRACE = 1.0  # seconds


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, step: int, signum: int, checkpoint: str | None) -> None:
        self.step, self.signum, self.checkpoint = step, signum, checkpoint
        super().__init__(f"stopped at step {step}; resume with --resume_from_checkpoint latest")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop(TrainerCallback):
    """Turns the first stop signal into "finish this step, checkpoint, stop"; see the module docstring."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal this process got
        self.signum: int | None = None  # the signal the run stops for (agreed over ranks)
        self.stopped_at: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    # --- signal handling -------------------------------------------------------------------------------------
    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. a notebook's worker thread)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def mute(self) -> None:
        """The run failed: a stop signal from now on is only noted (no message, no KeyboardInterrupt) until
        :meth:`uninstall`, so reporting the failure is not cut short by the launcher's SIGTERM."""
        for signum in self._previous:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame) -> None:
        self.received = self.received or signum

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._first_at = signum, now
            name = signal.Signals(signum).name
            print(f"\nhf-easyanimate: {name} received: finishing this step, then writing a checkpoint "
                  "(press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and now - self._first_at > REPEAT_GRACE:
            self.uninstall()
            raise KeyboardInterrupt

    # --- Trainer hooks ---------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.install()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        signum = max_over_ranks(self.received or 0, args.device)
        if signum:
            self.signum, self.stopped_at = signum, state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.uninstall()
        return control


def ignore_stop_signals() -> None:
    """In a data-loader worker: leave SIGINT/SIGTERM to the main process (see the module docstring)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def seed_worker_for_training(worker_id: int, num_workers: int, rank: int) -> None:
    """Trainer's ``seed_worker`` plus :func:`ignore_stop_signals`, as a data-loader ``worker_init_fn``."""
    ignore_stop_signals()
    seed_worker(worker_id, num_workers=num_workers, rank=rank)
