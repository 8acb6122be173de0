"""LoRA weights in memory, and their two on-disk spellings: the peft adapter and the EasyAnimate (kohya) file.

Pure tensor/dict code: no file I/O (see :mod:`hf_easyanimate.models.lora.files`), no model needed.

The EasyAnimate file is what the original's ``LoRANetwork.save_weights`` writes and what its ``merge_lora`` (used
by EasyAnimate's predict scripts and ComfyUI nodes) reads:

- per adapted Linear, ``<name>.lora_down.weight`` (rank, in), ``<name>.lora_up.weight`` (out, rank) and a 0-dim
  ``<name>.alpha``; the update is ``W += multiplier * (alpha / rank) * up @ down``;
- ``<name>`` is ``"lora_unet" + "." + "" + "." + <path>`` with every ``.`` turned into ``_``. The empty middle part
  is the name of the module the original matched (the transformer root), hence the **double underscore**:
  ``lora_unet__transformer_blocks_0_attn1_to_q``. ``LoRANetwork.load_weights`` needs exactly this spelling;
  ``merge_lora``'s getattr walk accepts either;
- ``<path>`` is a path in the *original* EasyAnimate transformer (the model those tools load). For V5/V5.1 it
  differs from diffusers' ``EasyAnimateTransformer3DModel`` in one place: the original has a separate text-stream
  attention ``attn2`` in MMDiT blocks where diffusers has ``attn1.add_{q,k,v}_proj`` / ``attn1.to_add_out``. We write
  the original spelling by default and read both. The V2-V4 ports keep the original module paths, and in V2/V3
  ``attn2`` *is* the text cross-attention: no renaming applies to them (their layer names tell them apart:
  ``attn_temporal`` / ``long_connect_fc`` for V2/V3, ``blocks_N`` for V4).
- metadata ``sshs_model_hash`` / ``sshs_legacy_hash`` (sd-webui-additional-networks hashes, computed exactly as
  the original does), plus informational ``ss_*`` keys and the peft config, so a round trip keeps it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import torch

LORA_PREFIX = "lora_unet"
TEXT_ENCODER_PREFIX = "lora_te"
PEFT_PREFIX = "base_model.model."
BLOCK_PATTERN = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
KOHYA_BLOCK_PATTERN = re.compile(r"^transformer_blocks_(\d+)_(.+)$")
KEY_STYLES = ("original", "diffusers")
PEFT_CONFIG_METADATA_KEY = "hf_easyanimate_peft_config"
ARCHITECTURE_METADATA_KEY = "hf_easyanimate_transformer"  # the transformer class the file was trained on
LEGACY_ARCHITECTURES = {"Transformer3DModel": "pixart", "HunyuanTransformer3DModel": "hunyuan"}

# Inside a transformer block: the original model's text-stream attention -> diffusers' folded-in projections.
ORIGINAL_TO_DIFFUSERS = {
    "attn2.to_q": "attn1.add_q_proj",
    "attn2.to_k": "attn1.add_k_proj",
    "attn2.to_v": "attn1.add_v_proj",
    "attn2.to_out.0": "attn1.to_add_out",
}
DIFFUSERS_TO_ORIGINAL = {value: key for key, value in ORIGINAL_TO_DIFFUSERS.items()}


class LoraFormatError(ValueError):
    """A LoRA state dict cannot be read or converted; the message names the offending keys."""


@dataclass
class LoraModule:
    """One adapted Linear: ``delta W = (alpha / rank) * up @ down``."""

    down: torch.Tensor  # (rank, in_features); peft's lora_A
    up: torch.Tensor  # (out_features, rank); peft's lora_B
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, multiplier: float = 1.0) -> torch.Tensor:
        """The float32 weight update this module adds at strength ``multiplier``."""
        return (multiplier * self.scale) * (self.up.float() @ self.down.float())


@dataclass
class LoraWeights:
    """A transformer LoRA keyed by diffusers module path, whatever file it came from."""

    modules: dict[str, LoraModule]
    base_model: str | None = None
    peft_config: dict | None = field(default=None, repr=False)  # the adapter_config it came with, if any
    source: str = ""
    # The transformer class the LoRA was trained on, when known: it decides how kohya names map to module paths.
    architecture: str | None = None

    @property
    def ranks(self) -> Counter:
        return Counter(module.rank for module in self.modules.values())

    def summary(self) -> str:
        ranks = ", ".join(f"{rank} ({count} layers)" for rank, count in sorted(self.ranks.items()))
        alphas = sorted({module.alpha for module in self.modules.values()})
        return f"{len(self.modules)} adapted layers; rank {ranks}; alpha {', '.join(f'{a:g}' for a in alphas)}"


# --- module paths and kohya names ------------------------------------------------------------------------------------

def to_original_path(path: str) -> str:
    """diffusers module path -> the same layer's path in the original EasyAnimate transformer."""
    match = BLOCK_PATTERN.match(path)
    if match and match.group(2) in DIFFUSERS_TO_ORIGINAL:
        return f"transformer_blocks.{match.group(1)}.{DIFFUSERS_TO_ORIGINAL[match.group(2)]}"
    return path


def to_diffusers_path(path: str) -> str:
    """Original EasyAnimate module path -> diffusers module path (identity outside the text-stream attention)."""
    match = BLOCK_PATTERN.match(path)
    if match and match.group(2) in ORIGINAL_TO_DIFFUSERS:
        return f"transformer_blocks.{match.group(1)}.{ORIGINAL_TO_DIFFUSERS[match.group(2)]}"
    return path


def kohya_name(path: str, key_style: str = "original") -> str:
    """``transformer_blocks.0.attn1.add_q_proj`` -> ``lora_unet__transformer_blocks_0_attn2_to_q`` (original)."""
    if key_style not in KEY_STYLES:
        raise ValueError(f"key_style must be one of {KEY_STYLES}, got {key_style!r}")
    module_path = to_original_path(path) if key_style == "original" else path
    return f"{LORA_PREFIX}__{module_path.replace('.', '_')}"


def _kohya_body(layer: str) -> str:
    """Strip ``lora_unet`` and the separator underscores: both ``lora_unet__x`` and ``lora_unet_x`` give ``x``."""
    return layer[len(LORA_PREFIX):].lstrip("_")


class KohyaNameResolver:
    """Maps kohya layer names back to diffusers module paths, without guessing which ``_`` was a ``.``.

    Built from a list of Linear paths (the layout of ``EasyAnimateTransformer3DModel``): names of block layers are
    looked up per block-relative path, so any depth works; original (``attn2``) and diffusers spellings both resolve.
    """

    def __init__(self, paths: list[str]) -> None:
        self.top: dict[str, str] = {}
        self.block: dict[str, str] = {}
        for path in paths:
            match = BLOCK_PATTERN.match(path)
            if match:
                relative = match.group(2)
                self.block[relative.replace(".", "_")] = relative
                if relative in DIFFUSERS_TO_ORIGINAL:
                    self.block[DIFFUSERS_TO_ORIGINAL[relative].replace(".", "_")] = relative
            else:
                self.top[path.replace(".", "_")] = path

    def resolve(self, layer: str) -> str | None:
        body = _kohya_body(layer)
        match = KOHYA_BLOCK_PATTERN.match(body)
        if match and match.group(2) in self.block:
            return f"transformer_blocks.{match.group(1)}.{self.block[match.group(2)]}"
        return self.top.get(body)


class LiteralNameResolver:
    """Kohya names of a model whose module paths are used as they are (the V2-V4 ports): built from its paths."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = {path.replace(".", "_"): path for path in paths}

    def resolve(self, layer: str) -> str | None:
        return self.paths.get(_kohya_body(layer))


def legacy_family(layer_names) -> str | None:
    """'pixart' (V2/V3) or 'hunyuan' (V4) when kohya layer names are those of a V2-V4 transformer, else None."""
    bodies = [_kohya_body(name) for name in layer_names if name.startswith(LORA_PREFIX)]
    if any("attn_temporal" in body or body.startswith(("long_connect_fc", "caption_projection")) for body in bodies):
        return "pixart"
    if any(re.match(r"^blocks_\d+_", body) for body in bodies):
        return "hunyuan"
    return None


@lru_cache(maxsize=2)
def legacy_template_resolver(family: str) -> LiteralNameResolver:
    """Every Linear a V2/V3 (``pixart``) or V4 (``hunyuan``) transformer can have, from meta-device templates."""
    from ..legacy import HunyuanTransformer3DModel, Transformer3DModel

    motion = {"num_attention_heads": 1, "num_transformer_block": 1, "temporal_position_encoding": True,
              "temporal_position_encoding_max_len": 4, "attention_block_types": ["Temporal_Self", "Global_Self"]}
    models = []
    with torch.device("meta"):
        if family == "pixart":
            for in_channels in (4, 12):  # 12: V3 InP with the CLIP projection
                models.append(Transformer3DModel(
                    num_attention_heads=1, attention_head_dim=32, in_channels=in_channels, out_channels=8,
                    num_layers=2, cross_attention_dim=32, sample_size=8, patch_size=2, caption_channels=8,
                    norm_type="ada_norm_single", basic_block_type="global_motionmodule", motion_module_type="Vanilla",
                    motion_module_kwargs_even=motion, motion_module_kwargs_odd=motion, enable_uvit=True,
                    attention_bias=True, after_norm=True))
        else:
            for in_channels in (4, 12):
                models.append(HunyuanTransformer3DModel(
                    num_attention_heads=1, attention_head_dim=16, in_channels=in_channels, out_channels=8,
                    patch_size=2, n_query=4, projection_dim=8, hidden_size=16, num_layers=4, cross_attention_dim=16,
                    cross_attention_dim_t5=8, pooled_projection_dim=8, text_len=2, text_len_t5=2, sample_size=8,
                    time_position_encoding=True, after_norm=True))
    # Block paths depend on the depth: accept any block number by resolving on the block-relative part.
    return _AnyDepthResolver([name for model in models for name, child in model.named_modules()
                              if isinstance(child, torch.nn.Linear)])


class _AnyDepthResolver(LiteralNameResolver):
    """A literal resolver whose ``<blocks>_N_`` / ``long_connect_fc_N`` numbers may exceed the template's depth."""

    BLOCKS = re.compile(r"^(transformer_blocks|blocks|long_connect_fc)_(\d+)(_.*)?$")

    def __init__(self, paths: list[str]) -> None:
        super().__init__(paths)
        self.relative: dict[tuple[str, str], str] = {}
        for path in paths:
            match = re.match(r"^(transformer_blocks|blocks|long_connect_fc)\.(\d+)(\..*)?$", path)
            if match:
                rest = match.group(3) or ""
                self.relative[(match.group(1), rest.replace(".", "_"))] = rest

    def resolve(self, layer: str) -> str | None:
        body = _kohya_body(layer)
        match = self.BLOCKS.match(body)
        if match:
            rest = self.relative.get((match.group(1), match.group(3) or ""))
            return None if rest is None else f"{match.group(1)}.{match.group(2)}{rest}"
        return self.paths.get(body)


@lru_cache(maxsize=1)
def template_resolver() -> KohyaNameResolver:
    """Resolver for every Linear that any EasyAnimate transformer layout can have (built on the meta device).

    Two tiny configurations cover the variants: MMDiT and plain blocks, ``text_proj`` as a Linear or as
    ``Sequential(RMSNorm, Linear)`` (``add_norm_text_encoder``), with and without the T5 projection (V5).
    """
    from diffusers import EasyAnimateTransformer3DModel

    paths: list[str] = []
    for add_norm in (False, True):
        with torch.device("meta"):
            model = EasyAnimateTransformer3DModel(
                num_attention_heads=1, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2,
                num_layers=2, mmdit_layers=1, time_embed_dim=4, text_embed_dim=4, text_embed_dim_t5=4,
                add_norm_text_encoder=add_norm,
            )
        paths += [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    return KohyaNameResolver(paths)


# --- peft adapter <-> LoraWeights ---------------------------------------------------------------------------------

def _jsonable(config: dict) -> dict:
    """A plain-JSON copy of a peft config dict (sets become sorted lists, enums their values)."""
    return json.loads(json.dumps(config, default=sorted))


def _pattern_value(patterns: dict, path: str, default):
    """peft's rule for rank_pattern / alpha_pattern: the first key matching the path's end, else the default."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def from_peft(state_dict: dict[str, torch.Tensor], config: dict, source: str = "") -> LoraWeights:
    """Read a peft LoRA state dict (``base_model.model.<path>.lora_A.weight`` ...) with its ``adapter_config``."""
    if config.get("peft_type", "LORA") != "LORA":
        raise LoraFormatError(f"{source}: peft_type {config.get('peft_type')!r} is not a LoRA adapter")
    for unsupported in ("use_dora", "lora_bias"):
        if config.get(unsupported):
            raise LoraFormatError(f"{source}: {unsupported}=True adapters have no EasyAnimate equivalent")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = re.match(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if match is None:
            raise LoraFormatError(f"{source}: unexpected key {key!r} (only LoRA A/B weights of Linear layers)")
        pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    modules: dict[str, LoraModule] = {}
    for path, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise LoraFormatError(f"{source}: layer {path} has lora_{''.join(pair)} but not both lora_A and lora_B")
        down, up = pair["A"], pair["B"]
        if down.dim() != 2:
            raise LoraFormatError(f"{source}: layer {path} is not a Linear LoRA (lora_A has shape {tuple(down.shape)})")
        rank = int(down.shape[0])
        config_rank = _pattern_value(config.get("rank_pattern") or {}, path, config["r"])
        if config_rank != rank:
            raise LoraFormatError(f"{source}: layer {path} has rank {rank} but adapter_config says {config_rank}")
        alpha = float(_pattern_value(config.get("alpha_pattern") or {}, path, config["lora_alpha"]))
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        modules[path] = LoraModule(down=down, up=up, alpha=scale * rank)
    family = legacy_family(f"{LORA_PREFIX}__{path.replace('.', '_')}" for path in modules)
    architecture = {value: key for key, value in LEGACY_ARCHITECTURES.items()}.get(family)
    return LoraWeights(modules, base_model=config.get("base_model_name_or_path"), peft_config=_jsonable(config),
                       source=source, architecture=architecture)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _config_matches(config: dict, weights: LoraWeights) -> bool:
    """True when ``config`` gives every module of ``weights`` its rank and alpha (so it can be kept as is)."""
    if config.get("use_rslora") or config.get("use_dora"):
        return False
    for path, module in weights.modules.items():
        rank = _pattern_value(config.get("rank_pattern") or {}, path, config.get("r"))
        alpha = _pattern_value(config.get("alpha_pattern") or {}, path, config.get("lora_alpha"))
        if rank != module.rank or alpha is None or float(alpha) != module.alpha:
            return False
    return True


def peft_config_for(weights: LoraWeights) -> dict:
    """An ``adapter_config`` dict for ``weights``: the one it came with when still valid, else a new one.

    A new config takes the most common rank/alpha as ``r``/``lora_alpha`` and lists the rest in
    ``rank_pattern``/``alpha_pattern`` with escaped full paths, so every layer keeps its own scale.
    """
    if weights.peft_config and _config_matches(weights.peft_config, weights):
        config = dict(weights.peft_config)
        if weights.base_model:
            config["base_model_name_or_path"] = weights.base_model
        return config
    from peft import LoraConfig

    rank = weights.ranks.most_common(1)[0][0]
    alpha = Counter(module.alpha for module in weights.modules.values()).most_common(1)[0][0]
    rank_pattern = {re.escape(path): m.rank for path, m in weights.modules.items() if m.rank != rank}
    alpha_pattern = {re.escape(path): _number(m.alpha) for path, m in weights.modules.items() if m.alpha != alpha}
    config = LoraConfig(
        r=rank,
        lora_alpha=_number(alpha),
        target_modules=sorted(weights.modules),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        base_model_name_or_path=weights.base_model,
    )
    return _jsonable(config.to_dict())


def to_peft(weights: LoraWeights) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict as peft saves it, adapter_config dict)."""
    state_dict: dict[str, torch.Tensor] = {}
    for path, module in sorted(weights.modules.items()):
        state_dict[f"{PEFT_PREFIX}{path}.lora_A.weight"] = module.down.contiguous()
        state_dict[f"{PEFT_PREFIX}{path}.lora_B.weight"] = module.up.contiguous()
    return state_dict, peft_config_for(weights)


# --- EasyAnimate (kohya) file <-> LoraWeights ---------------------------------------------------------------------

def addnet_hashes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, str]:
    """``(sshs_model_hash, sshs_legacy_hash)`` as the original computes them before saving.

    Both hash a serialisation that keeps only the ``ss_*`` metadata: the model hash is the sha256 of its tensor
    data (everything after the 8-byte length and the JSON header), the legacy hash the first 8 hex digits of the
    sha256 of the 64 KiB at absolute offset 1 MiB (empty for files under 1 MiB).
    """
    from safetensors.torch import save

    kept = {key: value for key, value in metadata.items() if key.startswith("ss_")}
    serialised = save(tensors, kept)
    header_length = int.from_bytes(serialised[:8], "little")
    model_hash = hashlib.sha256(serialised[8 + header_length:]).hexdigest()
    legacy_hash = hashlib.sha256(serialised[0x100000:0x110000]).hexdigest()[:8]
    return model_hash, legacy_hash


def to_easyanimate(
    weights: LoraWeights, dtype: torch.dtype | None = None, key_style: str = "original"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(kohya state dict, metadata). ``dtype`` casts every tensor, alpha included, as the original's save does."""
    tensors: dict[str, torch.Tensor] = {}
    for path, module in sorted(weights.modules.items()):
        name = kohya_name(path, key_style)
        target = dtype or module.down.dtype
        tensors[f"{name}.lora_down.weight"] = module.down.to(target).contiguous()
        tensors[f"{name}.lora_up.weight"] = module.up.to(target).contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(module.alpha, dtype=target)
    rank = weights.ranks.most_common(1)[0][0] if weights.modules else 0
    alphas = Counter(module.alpha for module in weights.modules.values())
    metadata = {
        "ss_network_module": "hf_easyanimate.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alphas.most_common(1)[0][0]:g}" if alphas else "0",
    }
    if weights.base_model:
        metadata["ss_sd_model_name"] = weights.base_model
    model_hash, legacy_hash = addnet_hashes(tensors, metadata)
    metadata["sshs_model_hash"] = model_hash
    metadata["sshs_legacy_hash"] = legacy_hash
    metadata[PEFT_CONFIG_METADATA_KEY] = json.dumps(peft_config_for(weights), sort_keys=True)
    if weights.architecture:
        metadata[ARCHITECTURE_METADATA_KEY] = weights.architecture
    return tensors, metadata


def from_easyanimate(
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    source: str = "",
    resolver: KohyaNameResolver | None = None,
) -> LoraWeights:
    """Read a kohya-style EasyAnimate LoRA (either key spelling) into the model's module paths.

    Without a ``resolver``, the layer names say which transformer they belong to: V2/V3 and V4 names resolve to
    those models' own paths, anything else through the V5 template (``attn2`` -> ``attn1.add_*``).
    """
    metadata = metadata or {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        layer, _, element = key.partition(".")
        groups.setdefault(layer, {})[element] = tensor
    architecture = metadata.get(ARCHITECTURE_METADATA_KEY)
    if resolver is None:
        # files we wrote name their transformer; others are recognised by their layer names
        family = LEGACY_ARCHITECTURES.get(architecture or "") or (None if architecture else legacy_family(groups))
        resolver = legacy_template_resolver(family) if family else template_resolver()
    text_encoder = sorted(layer for layer in groups if layer.startswith(TEXT_ENCODER_PREFIX))
    if text_encoder:
        raise LoraFormatError(
            f"{source}: text-encoder LoRA layers ({text_encoder[0]}, ... {len(text_encoder)} in all) are not "
            "supported: EasyAnimate V5.1's Qwen2-VL has none, and only the transformer LoRA is loaded"
        )
    modules: dict[str, LoraModule] = {}
    unknown: list[str] = []
    for layer, elements in groups.items():
        path = resolver.resolve(layer) if layer.startswith(LORA_PREFIX) else None
        if path is None:
            unknown.append(layer)
            continue
        if "lora_down.weight" not in elements or "lora_up.weight" not in elements:
            raise LoraFormatError(f"{source}: layer {layer} needs both lora_down.weight and lora_up.weight")
        down, up = elements["lora_down.weight"], elements["lora_up.weight"]
        if down.dim() != 2:
            raise LoraFormatError(f"{source}: layer {layer} is not a Linear LoRA (shape {tuple(down.shape)})")
        # As in the original merge: no alpha means scale 1, i.e. alpha = rank.
        alpha = float(elements["alpha"].item()) if "alpha" in elements else float(down.shape[0])
        if path in modules:
            raise LoraFormatError(f"{source}: layer {path} appears twice (original and diffusers spelling)")
        modules[path] = LoraModule(down=down, up=up, alpha=alpha)
    if unknown:
        raise LoraFormatError(
            f"{source}: {len(unknown)} layer name(s) do not name a Linear of the EasyAnimate transformer: "
            f"{', '.join(sorted(unknown)[:5])}"
        )
    peft_config = None
    if PEFT_CONFIG_METADATA_KEY in metadata:
        peft_config = json.loads(metadata[PEFT_CONFIG_METADATA_KEY])
    base_model = metadata.get("ss_sd_model_name") or (peft_config or {}).get("base_model_name_or_path")
    return LoraWeights(modules, base_model=base_model, peft_config=peft_config, source=source,
                       architecture=architecture)


def is_easyanimate_state_dict(keys) -> bool:
    return any(key.startswith((LORA_PREFIX, TEXT_ENCODER_PREFIX)) for key in keys)
