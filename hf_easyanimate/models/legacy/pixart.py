"""EasyAnimate V2 / V3 ``Transformer3DModel``: the PixArt-alpha DiT run per frame, with AnimateDiff-style motion
modules between its self- and cross-attention, U-ViT long skips, and (V3 InP) 8 CLIP image tokens.

Built from diffusers' pieces (``PatchEmbed`` with sin-cos positions, ``AdaLayerNormSingle``,
``PixArtAlphaTextProjection``, ``Attention``, ``FeedForward``); the module names, parameter shapes and persistent
buffers are the original's (``transformer_blocks.N.attn_temporal.temporal_transformer...``, the ``pe`` tables), so
the Hub checkpoints load with a strict key check. The forward takes the original's keywords of commit 45c298a
(``inpaint_latents``, ``encoder_hidden_states``, ``clip_encoder_hidden_states``, ``timestep``,
``added_cond_kwargs``, ``encoder_attention_mask``, ``clip_attention_mask``) and layout (latents (B, C, F, H, W)),
so a reference run of the original replays unchanged against it.

What the seed configs use is ported: ``norm_type: ada_norm_single``, 2D patches (no ``patch_3d`` / ``casual_3d``),
``basic_block_type`` ``motionmodule`` (V2) or ``global_motionmodule`` (V3: odd layers ``[Temporal_Self,
Global_Self]``), ``motion_module_type: Vanilla``; other values are refused when the config is read.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, HunyuanAttnProcessor2_0
from diffusers.models.embeddings import PatchEmbed, PixArtAlphaTextProjection
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormSingle
from torch import nn

UVIT_SKIPS = 13  # blocks 0-12 push their output, blocks 15.. pop it (the original's fixed U-ViT wiring)
UVIT_FIRST_POP = 15
CLIP_TOKENS = 8  # V3: one CLIP image embedding becomes 8 tokens
CLIP_IMAGE_DIM = 768
ATTENTION_CHUNK = 512  # the motion module attends in chunks of 512 sequences, as the original
VAE_SCALE = 8  # pixels per latent in height and width


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (the original's, diffusers' has the same math)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim): sin on even channels, cos on odd ones (AnimateDiff's temporal positions)."""
    position = torch.arange(length).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


class PositionalEncoding(nn.Module):
    """Adds the first L rows of a fixed table to (N, L, C); the table is a persistent buffer (in checkpoints)."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]


def _processor(qk_norm: bool):
    return HunyuanAttnProcessor2_0() if qk_norm else AttnProcessor2_0()


class VersatileAttention(Attention):
    """Self-attention over frames per pixel ("Temporal") or over every frame and pixel ("Global")."""

    def __init__(self, mode: str, dim: int, heads: int, head_dim: int, position_encoding: bool, max_len: int,
                 qk_norm: bool = False, skip_position_for_images: bool = False) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=head_dim, bias=False,
                         qk_norm="layer_norm" if qk_norm else None, processor=_processor(qk_norm))
        if mode not in ("Temporal", "Global"):
            raise ValueError(f"motion module attention {mode!r} is not supported (Temporal_Self, Global_Self)")
        self.mode = mode
        self.pos_encoder = PositionalEncoding(dim, max_len) if position_encoding else None
        # remove_time_embedding_in_photo: a single frame gets no temporal position (temporal attention only)
        self.skip_position_for_images = skip_position_for_images and mode == "Temporal"

    def forward(self, hidden_states: torch.Tensor, frames: int = 1, **unused: Any) -> torch.Tensor:
        # hidden_states: ((B F), D, C) -> per pixel over frames, or (B, F D, C) for global attention
        batch_frames, tokens, channels = hidden_states.shape
        x = hidden_states.reshape(batch_frames // frames, frames, tokens, channels).transpose(1, 2)
        x = x.reshape(-1, frames, channels)  # ((B D), F, C)
        if self.pos_encoder is not None and not (self.skip_position_for_images and frames == 1):
            x = self.pos_encoder(x)
        if self.mode == "Global":
            x = x.reshape(-1, tokens, frames, channels).transpose(1, 2).reshape(-1, frames * tokens, channels)
        outputs = [super(VersatileAttention, self).forward(x[i:i + ATTENTION_CHUNK])
                   for i in range(0, x.shape[0], ATTENTION_CHUNK)]
        x = torch.cat(outputs, dim=0)
        if self.mode == "Global":
            return x.reshape(-1, frames, tokens, channels).reshape(batch_frames, tokens, channels)
        return x.reshape(-1, tokens, frames, channels).transpose(1, 2).reshape(batch_frames, tokens, channels)


class MotionTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, kinds, position_encoding: bool, max_len: int,
                 qk_norm: bool, skip_position_for_images: bool) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            VersatileAttention(kind.split("_")[0], dim, heads, head_dim, position_encoding, max_len, qk_norm,
                               skip_position_for_images)
            for kind in kinds
        )
        for kind in kinds:
            if not kind.endswith("_Self"):
                raise ValueError(f"motion module attention {kind!r} is not supported (self-attention only)")
        self.norms = nn.ModuleList(FP32LayerNorm(dim) for _ in kinds)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = FP32LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            hidden_states = attention(norm(hidden_states), frames=frames) + hidden_states
        return self.ff(self.ff_norm(hidden_states)) + hidden_states


class TemporalTransformer3DModel(nn.Module):
    """GroupNorm, projection in, motion blocks, projection out (zero-initialised), residual; per frame tokens."""

    def __init__(self, channels: int, heads: int, head_dim: int, layers: int, kinds, position_encoding: bool,
                 max_len: int, qk_norm: bool, skip_position_for_images: bool = False, groups: int = 32) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            MotionTransformerBlock(inner, heads, head_dim, kinds, position_encoding, max_len, qk_norm,
                                   skip_position_for_images)
            for _ in range(layers)
        )
        self.proj_out = nn.Linear(inner, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, F, H, W)
        batch, channels, frames, height, width = x.shape
        frames_first = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        hidden = self.norm(frames_first).permute(0, 2, 3, 1).reshape(batch * frames, height * width, channels)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames)
        hidden = self.proj_out(hidden).reshape(batch * frames, height, width, channels).permute(0, 3, 1, 2)
        output = hidden + frames_first
        return output.reshape(batch, frames, channels, height, width).transpose(1, 2)


class VanillaTemporalModule(nn.Module):
    """The motion module of one DiT block (``attn_temporal``)."""

    def __init__(self, channels: int, num_attention_heads: int = 8, num_transformer_block: int = 2,
                 attention_block_types=("Temporal_Self", "Temporal_Self"), temporal_position_encoding: bool = False,
                 temporal_position_encoding_max_len: int = 4096, temporal_attention_dim_div: int = 1,
                 block_size: int = 1, remove_time_embedding_in_photo: bool = False, qk_norm: bool = False,
                 cross_frame_attention_mode=None, zero_initialize: bool = True, global_attention: bool = False,
                 global_num_attention_heads: int = 16, grid: bool = False) -> None:
        super().__init__()
        if grid or global_attention or cross_frame_attention_mode is not None:
            raise ValueError("this motion module variant (grid / global_attention / cross-frame attention) is not "
                             "ported; EasyAnimate V2/V3 use none of them")
        self.temporal_transformer = TemporalTransformer3DModel(
            channels, num_attention_heads, channels // num_attention_heads // temporal_attention_dim_div,
            num_transformer_block, list(attention_block_types), temporal_position_encoding,
            temporal_position_encoding_max_len, qk_norm, remove_time_embedding_in_photo,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)


class TemporalTransformerBlock(nn.Module):
    """PixArt's adaLN-single DiT block with the motion module between self- and cross-attention."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int, activation_fn: str,
                 attention_bias: bool, norm_elementwise_affine: bool, norm_eps: float, upcast_attention: bool,
                 motion_module_kwargs: dict, qk_norm: bool = False, after_norm: bool = False) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=attention_bias,
                               upcast_attention=upcast_attention, qk_norm="layer_norm" if qk_norm else None,
                               processor=_processor(qk_norm))
        self.attn_temporal = VanillaTemporalModule(dim, **motion_module_kwargs)
        self.norm2 = FP32LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps)
        self.attn2 = Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=heads, dim_head=head_dim,
                               bias=attention_bias, upcast_attention=upcast_attention,
                               qk_norm="layer_norm" if qk_norm else None, processor=_processor(qk_norm))
        self.ff = FeedForward(dim, activation_fn=activation_fn)
        self.norm4 = FP32LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps) if after_norm \
            else None
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None, timestep: torch.Tensor, frames: int, height: int,
                width: int) -> torch.Tensor:
        batch, tokens, channels = hidden_states.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + timestep.reshape(batch, 6, -1)
        ).chunk(6, dim=1)
        norm = self.norm1(hidden_states) * (1 + scale_msa) + shift_msa
        per_frame = norm.reshape(batch * frames, tokens // frames, channels)  # spatial attention within a frame
        attention = self.attn1(per_frame).reshape(batch, tokens, channels)
        hidden_states = gate_msa * attention + hidden_states

        video = hidden_states.reshape(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3)
        hidden_states = self.attn_temporal(video).permute(0, 2, 3, 4, 1).reshape(batch, tokens, channels)

        # PixArt: no norm before cross-attention
        query = hidden_states.to(encoder_hidden_states.dtype)
        hidden_states = self.attn2(query, encoder_hidden_states=encoder_hidden_states,
                                   attention_mask=encoder_attention_mask) + hidden_states

        norm = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        output = self.ff(norm)
        if self.norm4 is not None:
            output = self.norm4(output)
        return gate_mlp * output + hidden_states


class CLIPProjection(nn.Module):
    """V3: one 768-d CLIP image embedding -> 8 tokens of the transformer width (linear_2 zero-initialised)."""

    def __init__(self, in_features: int, hidden_size: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden_size)
        self.act_1 = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act_1(self.linear_1(x)))


SUPPORTED = {"norm_type": ("ada_norm_single",), "basic_block_type": ("motionmodule", "global_motionmodule"),
             "motion_module_type": ("Vanilla",), "patch_3d": (False,), "casual_3d": (False,),
             "attention_type": ("default",), "time_position_encoding_before_transformer": (False,),
             "only_cross_attention": (False,), "double_self_attention": (False,)}


class Transformer3DModel(ModelMixin, ConfigMixin):
    """EasyAnimate V2/V3 transformer; see the module docstring. Outputs ``out_channels`` (8: noise + variance)."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["TemporalTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 88,
        in_channels: int | None = None,
        out_channels: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        cross_attention_dim: int | None = None,
        attention_bias: bool = False,
        sample_size: int | None = None,
        num_vector_embeds: int | None = None,
        patch_size: int | None = None,
        activation_fn: str = "geglu",
        num_embeds_ada_norm: int | None = None,
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        norm_type: str = "layer_norm",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        attention_type: str = "default",
        caption_channels: int | None = None,
        basic_block_type: str = "motionmodule",
        enable_uvit: bool = False,
        patch_3d: bool = False,
        fake_3d: bool = False,
        time_patch_size: int | None = None,
        casual_3d: bool = False,
        casual_3d_upsampler_index: list | None = None,
        motion_module_type: str = "VanillaGrid",
        motion_module_kwargs: dict | None = None,
        motion_module_kwargs_odd: dict | None = None,
        motion_module_kwargs_even: dict | None = None,
        time_position_encoding_before_transformer: bool = False,
        qk_norm: bool = False,
        after_norm: bool = False,
        resize_inpaint_mask_directly: bool = False,
        enable_clip_in_inpaint: bool = True,
        enable_text_attention_mask: bool = True,
        add_noise_in_inpaint_model: bool = False,
    ) -> None:
        super().__init__()
        values = dict(norm_type=norm_type, basic_block_type=basic_block_type, motion_module_type=motion_module_type,
                      patch_3d=patch_3d, casual_3d=casual_3d, attention_type=attention_type,
                      time_position_encoding_before_transformer=time_position_encoding_before_transformer,
                      only_cross_attention=only_cross_attention, double_self_attention=double_self_attention)
        for key, value in values.items():
            if value not in SUPPORTED[key]:
                raise ValueError(f"EasyAnimate V2/V3 transformer option {key}={value!r} is not ported "
                                 f"(supported: {SUPPORTED[key]}); the published V2/V3 checkpoints do not use it")
        if sample_size is None or patch_size is None or caption_channels is None:
            raise ValueError("Transformer3DModel needs sample_size, patch_size and caption_channels")
        inner = num_attention_heads * attention_head_dim
        self.pos_embed = PatchEmbed(height=sample_size, width=sample_size, patch_size=patch_size,
                                    in_channels=in_channels, embed_dim=inner,
                                    interpolation_scale=max(sample_size // 64, 1))

        def kwargs_for(layer: int) -> dict:
            if basic_block_type == "global_motionmodule":
                return dict(motion_module_kwargs_even if layer % 2 == 0 else motion_module_kwargs_odd)
            return dict(motion_module_kwargs or {})

        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner, num_attention_heads, attention_head_dim, cross_attention_dim,
                                     activation_fn, attention_bias, norm_elementwise_affine, norm_eps,
                                     upcast_attention, kwargs_for(layer), qk_norm, after_norm)
            for layer in range(num_layers)
        )
        if enable_uvit:
            self.long_connect_fc = nn.ModuleList(nn.Linear(inner, inner) for _ in range(UVIT_SKIPS))
            for layer in self.long_connect_fc:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.out_channels = in_channels if out_channels is None else out_channels
        self.norm_out = nn.LayerNorm(inner, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, inner) / inner**0.5)
        self.proj_out = nn.Linear(inner, patch_size * patch_size * self.out_channels)
        self.use_additional_conditions = sample_size == 128
        self.adaln_single = AdaLayerNormSingle(inner, use_additional_conditions=self.use_additional_conditions)
        self.caption_projection = PixArtAlphaTextProjection(in_features=caption_channels, hidden_size=inner)
        self.clip_projection = CLIPProjection(CLIP_IMAGE_DIM, inner * CLIP_TOKENS) if in_channels == 12 else None
        self.gradient_checkpointing = False

    # What the CLIP image encoder hands this model: its projected image embedding (768-d).
    reference_image_features = "image_embeds"

    @property
    def clip_tokens(self) -> int | None:
        """How many CLIP image tokens the model takes (V3 InP: 8), None without a CLIP branch."""
        return CLIP_TOKENS if self.clip_projection is not None else None

    def training_inputs(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, prompt: dict,
                        inpaint_latents: torch.Tensor | None = None,
                        clip_encoder_hidden_states: torch.Tensor | None = None,
                        clip_attention_mask: torch.Tensor | None = None) -> dict:
        """The keywords of one training forward, as the original V2/V3 trainer passes them to ``training_losses``
        (resolution and aspect ratio only for 1024-pixel models, ``sample_size`` 128)."""
        added: dict = {"resolution": None, "aspect_ratio": None}
        if self.use_additional_conditions:
            batch, _, _, height, width = noisy_latents.shape
            height, width = height * VAE_SCALE, width * VAE_SCALE
            dtype, device = noisy_latents.dtype, noisy_latents.device
            added = {"resolution": torch.tensor([[height, width]], dtype=dtype, device=device).repeat(batch, 1),
                     "aspect_ratio": torch.tensor([[height / width]], dtype=dtype, device=device).repeat(batch, 1)}
        return {
            "hidden_states": noisy_latents,
            "timestep": timesteps,
            "encoder_hidden_states": prompt["encoder_hidden_states"],
            "encoder_attention_mask": prompt["encoder_attention_mask"],
            "added_cond_kwargs": added,
            "inpaint_latents": inpaint_latents,
            "clip_encoder_hidden_states": clip_encoder_hidden_states,
            "clip_attention_mask": clip_attention_mask,
            "return_dict": False,
        }

    def forward(
        self,
        hidden_states: torch.Tensor,
        inpaint_latents: torch.Tensor | None = None,
        control_latents: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        clip_encoder_hidden_states: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        added_cond_kwargs: dict | None = None,
        class_labels: torch.Tensor | None = None,
        cross_attention_kwargs: dict | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        clip_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        if control_latents is not None or attention_mask is not None or class_labels is not None:
            raise ValueError("control_latents / attention_mask / class_labels are not used by EasyAnimate V2/V3")
        if clip_attention_mask is not None:
            encoder_attention_mask = torch.cat([encoder_attention_mask, clip_attention_mask], dim=1)
        if encoder_attention_mask is not None and encoder_attention_mask.ndim == 2:  # 1 keep / 0 drop -> bias
            encoder_attention_mask = ((1 - encoder_attention_mask.to(encoder_hidden_states.dtype)) * -10000.0)
            encoder_attention_mask = encoder_attention_mask.unsqueeze(1)
        if inpaint_latents is not None:
            hidden_states = torch.cat([hidden_states, inpaint_latents], dim=1)

        batch, _, frames, height, width = hidden_states.shape
        patch = self.config.patch_size
        height, width = height // patch, width // patch
        per_frame = hidden_states.transpose(1, 2).reshape(batch * frames, -1, *hidden_states.shape[-2:])
        tokens = self.pos_embed(per_frame)  # ((B F), h w, C)
        timestep, embedded_timestep = self.adaln_single(
            timestep, added_cond_kwargs or {"resolution": None, "aspect_ratio": None}, batch_size=batch,
            hidden_dtype=tokens.dtype,
        )
        hidden_states = tokens.reshape(batch, frames * height * width, -1)

        encoder_hidden_states = self.caption_projection(encoder_hidden_states)
        encoder_hidden_states = encoder_hidden_states.view(batch, -1, hidden_states.shape[-1])
        if clip_encoder_hidden_states is not None:
            clip = self.clip_projection(clip_encoder_hidden_states).view(batch, -1, hidden_states.shape[-1])
            encoder_hidden_states = torch.cat([encoder_hidden_states, clip], dim=1)

        skips: list[torch.Tensor] = []
        uvit = self.config.enable_uvit
        for index, block in enumerate(self.transformer_blocks):
            if uvit and index >= UVIT_FIRST_POP:
                hidden_states = hidden_states + self.long_connect_fc[index - UVIT_FIRST_POP](skips.pop())
            arguments = (hidden_states, encoder_hidden_states, encoder_attention_mask, timestep, frames, height,
                         width)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, *arguments)
            else:
                hidden_states = block(*arguments)
            if uvit and index < UVIT_SKIPS:
                skips.append(hidden_states)

        shift, scale = (self.scale_shift_table[None] + embedded_timestep[:, None]).chunk(2, dim=1)
        hidden_states = self.proj_out(self.norm_out(hidden_states) * (1 + scale) + shift)
        hidden_states = hidden_states.reshape(batch, frames, height, width, patch, patch, self.out_channels)
        output = torch.einsum("nfhwpqc->ncfhpwq", hidden_states).reshape(
            batch, self.out_channels, frames, height * patch, width * patch
        )
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)
