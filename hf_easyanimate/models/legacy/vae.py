"""The MagVIT VAE of EasyAnimate V2, V3 and V4, encode path, with the original's module names and frame chunking.

diffusers ships only the V5 behaviour (``AutoencoderKLMagvit`` with ``cache_mag_vae``: a cached causal convolution
over 4n + 1 frames, and no mid-block attention), so the V2-V4 checkpoints cannot load into it. This class reads
the checkpoint's own ``vae/config.json`` (the original ``AutoencoderKLMagvit`` schema) and encodes as the original
does, chunk by chunk:

* ``slice_mag_vae`` (V2): chunks of ``mini_batch_encoder`` (9) frames from frame 0, every causal convolution
  padding the past by replicating the chunk's first frame;
* ``slice_compression_vae`` (V3) / ``cache_compression_vae`` (V4): a lone first frame when the count is odd,
  then chunks of ``mini_batch_encoder`` (8), every convolution padding one zero frame on both sides. (The two
  modes differ only in the decoder.)

The decoder is not ported: training needs only latents, and validation sampling for these versions is refused
at parse time. A checkpoint's ``decoder.*`` / ``post_quant_conv.*`` weights are therefore expected and set
aside, everything else must match exactly (:func:`hf_easyanimate.models.legacy.loading.load_legacy_vae`).
"""

from __future__ import annotations

import ast
import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ...data.buckets import FrameGrid

ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "elu": nn.ELU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}
CAUSAL, SYMMETRIC = "causal", "symmetric"  # temporal padding of a chunk (see the module docstring)


def activation(name: str) -> nn.Module:
    if name.lower() not in ACTIVATIONS:
        raise ValueError(f"unsupported VAE activation {name!r}; one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name.lower()]()


def _triple(value) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


class CausalConv3d(nn.Conv3d):
    """A 3D convolution whose time padding depends on the chunking mode; space is padded as configured.

    ``causal``: ``(k_t - 1) * dilation`` copies of the first frame before it (a chunk never sees later frames).
    ``symmetric``: zero frames on both sides, ``ceil(((k_t - 1) * dilation_w + 1 - stride_w) / 2)`` of them (the
    original derives that count from the *width* dilation and stride; kept as is).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1, dilation=1):
        kernel, strides, dilations = _triple(kernel_size), _triple(stride), _triple(dilation)
        self.causal_padding = (kernel[0] - 1) * dilations[0]
        self.symmetric_padding = math.ceil(((kernel[0] - 1) * dilations[2] + (1 - strides[2])) / 2)
        self.temporal_mode = CAUSAL
        super().__init__(in_channels, out_channels, kernel, stride=strides, dilation=dilations,
                         padding=(0, padding, padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_mode == CAUSAL:
            x = F.pad(x, (0, 0, 0, 0, self.causal_padding, 0), mode="replicate")
        else:
            x = F.pad(x, (0, 0, 0, 0, self.symmetric_padding, self.symmetric_padding))
        return super().forward(x)


class _FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (B, C, T, H, W); per frame when ``per_frame`` (the config's ``spatial_group_norm``)."""

    per_frame = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_frame or x.ndim != 5:
            return super().forward(x)
        batch, channels, frames = x.shape[:3]
        flat = x.transpose(1, 2).reshape(batch * frames, channels, *x.shape[3:])
        return super().forward(flat).reshape(batch, frames, channels, *x.shape[3:]).transpose(1, 2)


class ResidualBlock3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, act_fn: str, groups: int, eps: float,
                 dropout: float = 0.0, output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = _FrameGroupNorm(groups, in_channels, eps=eps, affine=True)
        self.nonlinearity = activation(act_fn)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.norm2 = _FrameGroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.conv1(self.nonlinearity(self.norm1(x)))
        x = self.conv2(self.dropout(self.nonlinearity(self.norm2(x))))
        return (x + shortcut) / self.output_scale_factor


class Downsampler3D(nn.Module):
    """Stride-2 convolution in space (pad right/bottom by one first), time, or both."""

    def __init__(self, channels: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.spatial = spatial
        stride = (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)
        self.conv = CausalConv3d(channels, channels, kernel_size=3, stride=stride, padding=0 if spatial else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.spatial else x)


DOWN_BLOCKS = {  # type -> (spatial downsample, temporal downsample)
    "DownBlock3D": (False, False),
    "SpatialDownBlock3D": (True, False),
    "TemporalDownBlock3D": (False, True),
    "SpatialTemporalDownBlock3D": (True, True),
}


class DownBlock3D(nn.Module):
    """Residual blocks and (not in the last block) a downsampler."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, layers: int, act_fn: str, groups: int,
                 add_downsample: bool) -> None:
        super().__init__()
        if kind not in DOWN_BLOCKS:
            raise ValueError(f"down block type {kind!r} is not supported; one of {sorted(DOWN_BLOCKS)}")
        self.convs = nn.ModuleList(
            ResidualBlock3D(in_channels if i == 0 else out_channels, out_channels, act_fn, groups, 1e-6)
            for i in range(layers)
        )
        spatial, temporal = DOWN_BLOCKS[kind]
        has_downsampler = (spatial or temporal) and add_downsample and kind != "DownBlock3D"
        self.downsampler = Downsampler3D(out_channels, spatial, temporal) if has_downsampler else None
        self.temporal_factor = 2 if has_downsampler and temporal else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.downsampler(x) if self.downsampler is not None else x


class VAEAttention(nn.Module):
    """Single-head (by default) attention with a GroupNorm in front and a residual, over a token layout chosen
    by ``layout``: "3d" (all frames and pixels of a chunk), "spatial" (per frame), "temporal" (per pixel)."""

    def __init__(self, channels: int, heads: int, groups: int, eps: float, layout: str) -> None:
        super().__init__()
        self.heads, self.layout = heads, layout
        self.scale = (channels // heads) ** -0.5
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, affine=True)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels, bias=True) for _ in range(3))
        self.to_out = nn.Linear(channels, channels, bias=True)

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, L, C) -> (N, L, C), residual included
        normed = self.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
        batch, length, channels = normed.shape
        q, k, v = (proj(normed).view(batch, length, self.heads, -1).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = out.transpose(1, 2).reshape(batch, length, channels).to(q.dtype)
        return self.to_out(out) + tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.layout == "3d":
            tokens = x.flatten(2).transpose(1, 2)
            return self._attend(tokens).transpose(1, 2).reshape(b, c, t, h, w)
        if self.layout == "spatial":
            tokens = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
            return self._attend(tokens).reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        tokens = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # temporal
        return self._attend(tokens).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)


class MidBlock3D(nn.Module):
    def __init__(self, channels: int, layers: int, act_fn: str, groups: int, attention: bool, layout: str,
                 heads: int) -> None:
        super().__init__()
        if layout not in ("3d", "spatial", "temporal", "spatial_temporal"):
            raise ValueError(f"mid_block_attention_type {layout!r} is not supported")
        self.convs = nn.ModuleList(ResidualBlock3D(channels, channels, act_fn, groups, 1e-6) for _ in range(layers))
        blocks: list[nn.Module | None] = []
        for _ in range(layers - 1):
            if not attention:
                blocks.append(None)
            elif layout == "spatial_temporal":
                blocks.append(nn.ModuleList([VAEAttention(channels, heads, groups, 1e-6, "spatial"),
                                             VAEAttention(channels, heads, groups, 1e-6, "temporal")]))
            else:
                blocks.append(VAEAttention(channels, heads, groups, 1e-6, layout))
        self.attentions = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs[0](x)
        for attention, conv in zip(self.attentions, self.convs[1:]):
            if isinstance(attention, nn.ModuleList):
                for part in attention:
                    x = part(x)
            elif attention is not None:
                x = attention(x)
            x = conv(x)
        return x


class MagvitEncoder(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        channels = list(config.block_out_channels or [config.ch * m for m in config.ch_mult])
        kinds = config.down_block_types
        if len(kinds) != len(channels):
            raise ValueError("down_block_types and block_out_channels must have the same length")
        if any(config.use_gc_blocks or ()):
            # The original's global-context block does not run on current torch (an einsum with spaced, numbered
            # subscripts); no published V2-V4 checkpoint uses it.
            raise ValueError("use_gc_blocks (global-context blocks) is not supported; no published V2-V4 VAE uses it")
        groups = config.norm_num_groups
        self.conv_in = CausalConv3d(config.in_channels, channels[0], kernel_size=3)
        self.down_blocks = nn.ModuleList(
            DownBlock3D(kind, channels[max(i - 1, 0)], channels[i], config.layers_per_block, config.act_fn, groups,
                        add_downsample=i < len(kinds) - 1)
            for i, kind in enumerate(kinds)
        )
        self.mid_block = MidBlock3D(
            channels[-1], config.layers_per_block, config.act_fn, groups, config.mid_block_use_attention,
            config.mid_block_attention_type, config.mid_block_num_attention_heads,
        )
        self.conv_norm_out = _FrameGroupNorm(groups, channels[-1], eps=1e-6)
        self.conv_act = activation(config.act_fn)
        self.conv_out = CausalConv3d(channels[-1], 2 * config.latent_channels, kernel_size=3)
        for module in self.modules():
            if isinstance(module, _FrameGroupNorm):
                module.per_frame = bool(config.spatial_group_norm)

    def _set_mode(self, mode: str) -> None:
        for module in self.modules():
            if isinstance(module, CausalConv3d):
                module.temporal_mode = mode

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))

    def chunks(self, frames: int, chunk: int, first_frame_alone: bool) -> list[tuple[int, int, str]]:
        """(start, end, temporal mode) of each chunk the clip is encoded in."""
        if not first_frame_alone:
            return [(i, min(i + chunk, frames), CAUSAL) for i in range(0, frames, chunk)]
        start, parts = 0, []
        if frames % 2:
            parts.append((0, 1, SYMMETRIC))
            start = 1
        return parts + [(i, min(i + chunk, frames), SYMMETRIC) for i in range(start, frames, chunk)]

    def forward(self, x: torch.Tensor, chunk: int | None, first_frame_alone: bool) -> torch.Tensor:
        """``chunk`` None: the whole clip at once, causally (a VAE config with no slice/cache mode)."""
        outputs = []
        for start, end, mode in self.chunks(x.shape[2], chunk or x.shape[2], first_frame_alone):
            self._set_mode(mode)
            outputs.append(self._chunk(x[:, :, start:end]))
        return torch.cat(outputs, dim=2)


def temporal_downsamples(down_block_types) -> int:
    """How many of the encoder's blocks halve time (a temporal block's downsampler; the last block has none)."""
    kinds = _as_list(down_block_types) or []
    return sum(DOWN_BLOCKS.get(kind, (False, False))[1] for kind in kinds[:-1])


def _as_list(value):
    """The original stores block-type tuples either as lists or as their Python repr."""
    return list(ast.literal_eval(value)) if isinstance(value, str) else (list(value) if value is not None else None)


def temporal_latents(frames: int, downsamples: int) -> int:
    """Latent frames of a chunk of ``frames`` after ``downsamples`` stride-2 convolutions in time (kernel 3, padded
    by 2 in total): each halves ``n`` to ``(n - 1) // 2 + 1``, so 8 -> 2 and 9 -> 3 after two."""
    for _ in range(downsamples):
        frames = (frames - 1) // 2 + 1
    return frames


def legacy_frame_grid(config) -> FrameGrid:
    """The frame grid of a V2-V4 MagVIT from its config: chunks of ``mini_batch_encoder`` frames, each giving
    ``temporal_latents(chunk, temporal downsamplers)`` latent frames."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    step = int(get("mini_batch_encoder", 9))
    return FrameGrid(step, plus_one=False,
                     latents_per_step=temporal_latents(step, temporal_downsamples(get("down_block_types"))))


class LegacyMagvitVAE(ModelMixin, ConfigMixin):
    """EasyAnimate V2-V4 ``AutoencoderKLMagvit`` (encoder and ``quant_conv``); ``encode(x).latent_dist`` as diffusers.

    The config arguments are the original class's, so the checkpoint's ``vae/config.json`` builds it unchanged.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ch: int = 128,
        ch_mult=(1, 2, 4, 4),
        block_out_channels=(128, 256, 512, 512),
        use_gc_blocks=None,
        down_block_types=None,
        up_block_types=None,
        mid_block_type: str = "MidBlock3D",
        mid_block_use_attention: bool = True,
        mid_block_attention_type: str = "3d",
        mid_block_num_attention_heads: int = 1,
        layers_per_block: int = 2,
        act_fn: str = "silu",
        num_attention_heads: int = 1,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        scaling_factor: float = 0.1825,
        force_upcast: float = True,
        slice_mag_vae: bool = True,
        slice_compression_vae: bool = False,
        cache_compression_vae: bool = False,
        cache_mag_vae: bool = False,
        use_tiling: bool = False,
        use_tiling_encoder: bool = False,
        use_tiling_decoder: bool = False,
        mini_batch_encoder: int = 9,
        mini_batch_decoder: int = 3,
        upcast_vae: bool = False,
        spatial_group_norm: bool = False,
        tile_sample_min_size: int = 384,
        tile_overlap_factor: float = 0.25,
    ) -> None:
        super().__init__()
        if mid_block_type != "MidBlock3D":
            raise ValueError(f"mid_block_type {mid_block_type!r} is not supported (only MidBlock3D)")
        if cache_mag_vae:
            raise ValueError("cache_mag_vae is the V5 VAE: load it with diffusers' AutoencoderKLMagvit")
        kinds = _as_list(down_block_types) or ["SpatialDownBlock3D"] * len(block_out_channels)
        self.register_to_config(down_block_types=kinds, up_block_types=_as_list(up_block_types))
        self.encoder = MagvitEncoder(self.config)
        self.quant_conv = nn.Conv3d(2 * latent_channels, 2 * latent_channels, kernel_size=1)
        self.first_frame_alone = bool(slice_compression_vae or cache_compression_vae)
        self.chunked = bool(slice_mag_vae) or self.first_frame_alone
        self.mini_batch_encoder = int(mini_batch_encoder)
        # the original derives the tile's latent size from ch_mult, whatever block_out_channels says
        self.tile_latent_min_size = int(tile_sample_min_size / (2 ** (len(ch_mult) - 1)))

    @property
    def frame_grid(self):
        """Frame counts are multiples of the chunk (``mini_batch_encoder``), as the original buckets them."""
        return legacy_frame_grid(self.config)

    @property
    def temporal_compression_ratio(self) -> int:
        """Frames per chunk (``mini_batch_encoder``), the original's ``sample_n_frames_bucket_interval``."""
        return self.mini_batch_encoder

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.upcast_vae:  # as the original: the encoder itself is cast to float32 for good
            x = x.float()
            self.encoder.float()
            self.quant_conv.float()
        chunk = self.mini_batch_encoder if self.chunked else None
        return self.quant_conv(self.encoder(x, chunk, self.first_frame_alone))

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """(B, 3, F, H, W) in [-1, 1] -> the latent posterior (diffusers' ``DiagonalGaussianDistribution``)."""
        tiled = self.config.use_tiling or self.config.use_tiling_encoder
        big = x.shape[-1] > self.config.tile_sample_min_size or x.shape[-2] > self.config.tile_sample_min_size
        moments = self._tiled_moments(x) if tiled and big else self._moments(x)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def _tiled_moments(self, x: torch.Tensor) -> torch.Tensor:
        """The original's tiled encode: overlapping tiles, blended where they meet (linear ramps)."""
        tile, factor = self.config.tile_sample_min_size, self.config.tile_overlap_factor
        overlap = int(tile * (1 - factor))
        blend = int(self.tile_latent_min_size * factor)
        limit = self.tile_latent_min_size - blend
        rows = [[self._moments(x[:, :, :, i:i + tile, j:j + tile]) for j in range(0, x.shape[4], overlap)]
                for i in range(0, x.shape[3], overlap)]
        result = []
        for i, row in enumerate(rows):
            line = []
            for j, part in enumerate(row):
                if i > 0:
                    part = _blend(rows[i - 1][j], part, blend, axis=3)
                if j > 0:
                    part = _blend(row[j - 1], part, blend, axis=4)
                line.append(part[:, :, :, :limit, :limit])
            result.append(torch.cat(line, dim=4))
        return torch.cat(result, dim=3)


def _blend(previous: torch.Tensor, current: torch.Tensor, extent: int, axis: int) -> torch.Tensor:
    """Ramp ``current``'s first ``extent`` rows (``axis``) from ``previous``'s last ones, in place, as the original
    does (later tiles then blend with already-blended neighbours)."""
    extent = min(previous.shape[axis], current.shape[axis], extent)
    for k in range(extent):
        weight = k / extent
        tail = previous.select(axis, previous.shape[axis] - extent + k)
        current.select(axis, k).copy_(tail * (1 - weight) + current.select(axis, k) * weight)
    return current
