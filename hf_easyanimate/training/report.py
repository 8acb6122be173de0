"""``hf-easyanimate report OUT_DIR``: a loss plot (with the validation metrics beside it) and the latest validation
contact sheet of a run.

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

from ..utils.atomic import atomic_path
from ..utils.media import CONTACT_SHEET, VALIDATION_DIR

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


def curve(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one logged key."""
    return [(entry["step"], float(entry[key])) for entry in log_history if key in entry and "step" in entry]


def loss_curves(log_history: list[dict]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, eval loss) pairs from Trainer's ``log_history``."""
    return curve(log_history, "loss"), curve(log_history, "eval_loss")


def metric_curves(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The validation metrics that were logged (CLIP scores, eval loss by noise band), by key."""
    from ..metrics import BAND_KEYS, CLIP_METRICS

    curves = {key: curve(log_history, key) for key in (*CLIP_METRICS, *BAND_KEYS)}
    return {key: points for key, points in curves.items() if points}


def latest_validation_sheet(out_dir: str) -> tuple[str, int] | tuple[None, None]:
    sheets = glob.glob(os.path.join(out_dir, VALIDATION_DIR, "step-*", CONTACT_SHEET))
    if not sheets:
        return None, None
    newest = max(sheets, key=lambda path: _step_of(os.path.dirname(path)))
    return newest, _step_of(os.path.dirname(newest))


def plot_losses(train: list[tuple[int, float]], evals: list[tuple[int, float]], path: str, title: str,
                metrics: dict[str, list[tuple[int, float]]] | None = None) -> None:
    """Write the loss-over-steps PNG (train line, eval markers, eval loss by noise band) with labelled axes and a
    legend, and beside it, when logged, the CLIP validation metrics over steps."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportError(
            "hf-easyanimate report draws its plot with matplotlib, a dependency of hf_easyanimate that is not "
            "installed in this environment: pip install matplotlib"
        ) from error

    metrics = metrics or {}
    clip = {key: points for key, points in metrics.items() if not key.startswith("eval_loss")}
    bands = {key: points for key, points in metrics.items() if key.startswith("eval_loss")}
    figure = Figure(figsize=(14 if clip else 8, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot(1, 2 if clip else 1, 1)
    if train:
        axes.plot(*zip(*train), color="tab:blue", linewidth=1.5, label="train loss")
    if evals:
        axes.plot(*zip(*evals), color="tab:orange", linewidth=1.5, marker="o", label="eval loss (deterministic)")
    for (key, points), style in zip(sorted(bands.items()), (":", "--", "-.")):
        axes.plot(*zip(*points), color="tab:orange", linestyle=style, marker=".", linewidth=1,
                  label=key.replace("eval_loss_", "eval loss, ").replace("_", " "))
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if train or evals:
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, "no loss logged yet", ha="center", va="center", transform=axes.transAxes)
    if clip:
        right = figure.add_subplot(1, 2, 2)
        for (key, points), colour in zip(sorted(clip.items()), ("tab:green", "tab:purple")):
            right.plot(*zip(*points), color=colour, marker="o", linewidth=1.5, label=key.replace("_", " "))
        right.set_xlabel("optimizer step")
        right.set_ylabel("CLIP cosine similarity")
        right.set_title("validation metrics (higher is better)")
        right.grid(True, alpha=0.3)
        right.legend(loc="best")
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
    history = state.get("log_history", [])
    train, evals = loss_curves(history)
    report_dir = os.path.join(out_dir, REPORT_DIR)
    os.makedirs(report_dir, exist_ok=True)
    loss_plot = os.path.join(report_dir, LOSS_PLOT)
    plot_losses(train, evals, loss_plot, f"{os.path.basename(out_dir)}: loss over {state.get('global_step', 0)} steps",
                metric_curves(history))
    sheet, step = latest_validation_sheet(out_dir)
    copied = None
    if sheet is not None:
        copied = os.path.join(report_dir, LATEST_SHEET)
        with atomic_path(copied) as temporary:
            shutil.copyfile(sheet, temporary)
    return ReportPaths(loss_plot=loss_plot, validation_sheet=copied, validation_step=step, trainer_state=state_path)
