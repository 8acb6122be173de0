"""``hf-easyanimate plan-memory RECIPE.yaml [--gpu_memory_gb 24] [--flag value ...]``: predicted peak GPU memory of
the run the recipe describes, part by part, and the cheapest flags that make it fit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import SimpleNamespace

from ..config import RecipeError
from ..memory.planner import GIB, SLOWDOWN, MemoryPlan, PlannerError, format_table, suggestions
from ..memory.run_plan import RunPlan, plan_run
from ..models.checkpoint import plan_checkpoint
from ..models.errors import ModelLoadError
from ..trainers.lora_config import parse_values

DESCRIPTION = (
    "Predict the peak GPU memory of a LoRA run from its recipe, without a GPU and without reading any weights: the "
    "transformer is built on the meta device from the checkpoint's config (its folder, the Hub cache, or the "
    "published configs shipped with hf_easyanimate) and one training step is traced at the recipe's largest "
    "bucket. Prints the parts, says whether the run fits --gpu_memory_gb and, if not, the cheapest flags that "
    "make it fit. Exit status 0: fits; 1: does not fit as given; 2: bad recipe or no config found."
)


def plan_values(argv: list[str]) -> RunPlan:
    """The plan of the recipe + flags in ``argv``, from the parsed values (no TrainingArguments is built: that
    would set up the launch of this process)."""
    values = parse_values(argv)
    model = values.get("pretrained_model_name_or_path")
    if not model:
        raise RecipeError("--pretrained_model_name_or_path is required (the recipe names the checkpoint)")
    flags = SimpleNamespace(**values)
    return plan_run(plan_checkpoint(model, values.get("revision"), values.get("cache_dir")), flags, flags, flags)


def _print_plan(planned: RunPlan, budget_gb: float) -> None:
    shape, result, checkpoint = planned.shape, planned.result, planned.checkpoint
    print(f"model: {checkpoint.path} ({checkpoint.title}; transformer config: {checkpoint.source})")
    print(f"largest bucket: batch {shape.batch_size} x {shape.frames} frames x {shape.height}x{shape.width} px = "
          f"{result.tokens:,} video tokens per sample (+ text); gradient checkpointing "
          f"{'on' if shape.gradient_checkpointing else 'off'}, optimizer {shape.optimizer}, LoRA rank {shape.rank}")
    if planned.table:
        print("token-length table (--training_with_video_token_length):")
        print("\n".join(planned.table))
    print(format_table(result, int(budget_gb * GIB)))
    for note in result.notes:
        print(f"note: {note}")


def _print_suggestion(planned: RunPlan, budget: int) -> None:
    options: list[tuple[MemoryPlan, list[str]]] = suggestions(planned.context, planned.shape, budget)
    fitting = [(p, flags) for p, flags in options if p.total <= budget]
    if fitting:
        best, flags = fitting[0]
        slowdown = sum(SLOWDOWN[flag.split()[0].lstrip("-")] * (int(flag.split()[-1]) if "blocks_to_swap" in flag
                                                                   else 1) for flag in flags)
        print(f"suggestion (cheapest first, about +{slowdown:.0%} step time): {' '.join(flags)} -> "
              f"{best.total / GIB:.1f} GiB")
        print(format_table(best, budget))
    else:
        last, flags = options[-1] if options else (planned.result, ["(as given)"])
        print(f"no flag set fits: the smallest is {last.total / GIB:.1f} GiB with {' '.join(flags)}; lower --rank, "
              "the bucket size (--video_sample_size / --token_sample_size) or --video_sample_n_frames, or use a "
              "larger GPU")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--gpu_memory_gb", type=float, default=24.0, help="GPU memory to fit (GiB).")
    if not argv or any(arg in ("-h", "--help") for arg in argv):
        print("usage: hf-easyanimate plan-memory RECIPE.yaml [--gpu_memory_gb 24] [--flag value ...]\n\n"
              + DESCRIPTION)
        return 0 if argv else 2
    own, rest = extra.parse_known_args(argv)
    try:
        planned = plan_values(rest)
    except (RecipeError, PlannerError, ModelLoadError, ValueError) as error:
        print(f"hf-easyanimate plan-memory: error: {error}", file=sys.stderr)
        return 2
    _print_plan(planned, own.gpu_memory_gb)
    budget = int(own.gpu_memory_gb * GIB)
    if planned.result.total <= budget:
        print(f"fits: {planned.result.total / GIB:.1f} GiB of {own.gpu_memory_gb:g} GiB")
        return 0
    print(f"does not fit: {planned.result.total / GIB:.1f} GiB > {own.gpu_memory_gb:g} GiB")
    _print_suggestion(planned, budget)
    return 1
