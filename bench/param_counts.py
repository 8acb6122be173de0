"""Parameter counts of the published EasyAnimate transformers, built on the meta device from their configs.

    python bench/param_counts.py [--smoke]

The configs ship with the package (hf_easyanimate/models/published.json, each with its source); nothing is
downloaded and no weights are allocated. Prints one row per checkpoint: total parameters, those of the
repeated blocks and the rest, and the Linear layers a default LoRA adapts (with its size at rank 128).
"""

from __future__ import annotations

import argparse

import torch
from _report import SMOKE_HELP, ratio

from hf_easyanimate.models.loading import transformer_from_config
from hf_easyanimate.models.lora import linear_module_paths
from hf_easyanimate.models.published import published_configs

RANK = 128


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + " (the smallest config only)")
    options = parser.parse_args()
    configs = published_configs()
    if options.smoke:
        configs = dict([min(configs.items(), key=lambda item: item[1].transformer.get("num_layers", 0))])
    print(f"| checkpoint | version | parameters | in the blocks + the rest | LoRA layers | LoRA params (rank {RANK}) |")
    print("|---|---|---|---|---|---|")
    ratios: dict[str, float] = {}
    for name, published in configs.items():
        model = transformer_from_config(published.transformer)
        blocks = getattr(model, "transformer_blocks", None) or model.blocks
        total, in_blocks = count(model), sum(count(block) for block in blocks)
        paths = linear_module_paths(model)
        modules = dict(model.named_modules())
        lora = sum(RANK * (modules[p].in_features + modules[p].out_features) for p in paths)
        print(f"| {name} | {published.version} | {total / 1e9:.3f} B | {len(blocks)} blocks {in_blocks / 1e9:.3f} B + "
              f"{(total - in_blocks) / 1e6:.1f} M | {len(paths)} | {lora / 1e6:.1f} M |")
        ratios[name] = lora / total
    for name, value in ratios.items():
        ratio(f"LoRA (rank {RANK}) / base parameters, {name}", value)


if __name__ == "__main__":
    main()
