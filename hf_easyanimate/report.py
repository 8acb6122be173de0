"""``hf-easyanimate report OUT_DIR``: a loss plot and the latest validation contact sheet of a run.

:func:`render` is the hook for the model card: it returns the paths of the files it wrote under
``OUT_DIR/report/`` so a card (or anything else) can embed them with relative links.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from dataclasses import dataclass

from .atomic import atomic_path
from .media import CONTACT_SHEET, VALIDATION_DIR

REPORT_DIR = "report"
LOSS_PLOT = "loss.png"
LATEST_SHEET = "validation_latest.png"


class ReportError(RuntimeError):
    """The run folder holds nothing to report (or matplotlib is missing); the message says what to do."""


@dataclass
class ReportPaths:
    """Files written by :func:`render` (absolute paths); ``validation_sheet`` is None without validation."""

    loss_plot: str
    validation_sheet: str | None
    validation_step: int | None
    trainer_state: str


def _step_of(folder: str) -> int:
    """N of a ``step-N`` folder (-1 if the name has no number)."""
    match = re.search(r"-(\d+)$", os.path.basename(folder))
    return int(match.group(1)) if match else -1


def find_trainer_state(out_dir: str) -> str:
    """The most advanced ``trainer_state.json``: ``OUT_DIR``'s own or that of its newest ``checkpoint-N``."""
    candidates = glob.glob(os.path.join(out_dir, "trainer_state.json"))
    candidates += glob.glob(os.path.join(out_dir, "checkpoint-*", "trainer_state.json"))
    if not candidates:
        raise ReportError(
            f"no trainer_state.json in {out_dir} or its checkpoint-N folders: is this a training output_dir? "
            "(it is written at the end of training and in every checkpoint, see --save_steps)"
        )

    def global_step(path: str) -> int:
        with open(path, encoding="utf-8") as handle:
            return int(json.load(handle).get("global_step", 0))

    return max(candidates, key=global_step)


def loss_curves(log_history: list[dict]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, eval loss) pairs from Trainer's ``log_history``."""
    train = [(entry["step"], float(entry["loss"])) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [(entry["step"], float(entry["eval_loss"])) for entry in log_history
             if "eval_loss" in entry and "step" in entry]
    return train, evals


def latest_validation_sheet(out_dir: str) -> tuple[str, int] | tuple[None, None]:
    sheets = glob.glob(os.path.join(out_dir, VALIDATION_DIR, "step-*", CONTACT_SHEET))
    if not sheets:
        return None, None
    newest = max(sheets, key=lambda path: _step_of(os.path.dirname(path)))
    return newest, _step_of(os.path.dirname(newest))


def plot_losses(train: list[tuple[int, float]], evals: list[tuple[int, float]], path: str, title: str) -> None:
    """Write the loss-over-steps PNG (train line, eval markers) with labelled axes and a legend."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportError(
            "hf-easyanimate report draws its plot with matplotlib, a dependency of hf_easyanimate that is not "
            "installed in this environment: pip install matplotlib"
        ) from error

    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), color="tab:blue", linewidth=1.5, label="train loss")
    if evals:
        axes.plot(*zip(*evals), color="tab:orange", linewidth=1.5, marker="o", label="eval loss (deterministic)")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if train or evals:
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, "no loss logged yet", ha="center", va="center", transform=axes.transAxes)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def render(out_dir: str) -> ReportPaths:
    """Write ``OUT_DIR/report/loss.png`` and a copy of the newest validation contact sheet; return their paths."""
    out_dir = os.path.abspath(out_dir)
    if not os.path.isdir(out_dir):
        raise ReportError(f"{out_dir} is not a folder; pass the --output_dir of a training run")
    state_path = find_trainer_state(out_dir)
    with open(state_path, encoding="utf-8") as handle:
        state = json.load(handle)
    train, evals = loss_curves(state.get("log_history", []))
    report_dir = os.path.join(out_dir, REPORT_DIR)
    os.makedirs(report_dir, exist_ok=True)
    loss_plot = os.path.join(report_dir, LOSS_PLOT)
    plot_losses(train, evals, loss_plot, f"{os.path.basename(out_dir)}: loss over {state.get('global_step', 0)} steps")
    sheet, step = latest_validation_sheet(out_dir)
    copied = None
    if sheet is not None:
        copied = os.path.join(report_dir, LATEST_SHEET)
        with atomic_path(copied) as temporary:
            shutil.copyfile(sheet, temporary)
    return ReportPaths(loss_plot=loss_plot, validation_sheet=copied, validation_step=step, trainer_state=state_path)
