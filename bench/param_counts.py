"""Parameter counts of the published EasyAnimate transformers, built on the meta device from their configs.

    python bench/param_counts.py

The configs ship with the package (hf_easyanimate/configs/published.json, each with its source); nothing is
downloaded and no weights are allocated. Prints one row per checkpoint: total parameters, those of the
repeated blocks and the rest, and the Linear layers a default LoRA adapts (with its size at rank 128).
"""

from __future__ import annotations

import torch

from hf_easyanimate.models.loading import transformer_from_config
from hf_easyanimate.models.lora import linear_module_paths
from hf_easyanimate.models.published import published_configs

RANK = 128


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    print(f"| checkpoint | version | parameters | in the blocks + the rest | LoRA layers | LoRA params (rank {RANK}) |")
    print("|---|---|---|---|---|---|")
    for name, published in published_configs().items():
        model = transformer_from_config(published.transformer)
        blocks = getattr(model, "transformer_blocks", None) or model.blocks
        total, in_blocks = count(model), sum(count(block) for block in blocks)
        paths = linear_module_paths(model)
        modules = dict(model.named_modules())
        lora = sum(RANK * (modules[p].in_features + modules[p].out_features) for p in paths)
        print(f"| {name} | {published.version} | {total / 1e9:.3f} B | {len(blocks)} blocks {in_blocks / 1e9:.3f} B + "
              f"{(total - in_blocks) / 1e6:.1f} M | {len(paths)} | {lora / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
