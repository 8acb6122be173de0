"""EasyAnimate V4 ``HunyuanTransformer3DModel``: diffusers' HunyuanDiT run over the tokens of every frame.

What V4 adds to ``HunyuanDiT2DModel`` (whose embeddings, attention processor and block layout it reuses):

* a fixed sinusoidal position per frame, added in every block (``t_embed``, a persistent table);
* the 2D RoPE of one frame tiled over all frames, and switched off in layer 0's self-attention;
* inpaint input channels (noisy + VAE-encoded mask + masked-video latents) and, for InP, a cross-attention to
  CLIP image tokens: the CLIP ViT's patch tokens through a Qwen-VL style perceiver resampler
  (``clip_projection``) to ``n_query`` tokens, a GEGLU gate, and learned padding for dropped tokens;
* a learned-sigma head (``out_channels = 2 x latent``): ``ddpm`` scores the first half.

Module names, shapes and buffers are the original's, so the Hub checkpoint loads with a strict key check; the
forward takes the original's keywords and latents as (B, C, F, H, W). Only ``basic_block_type: basic`` (what V4
uses) is ported.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention, HunyuanAttnProcessor2_0
from diffusers.models.embeddings import (
    HunyuanCombinedTimestepTextSizeStyleEmbedding,
    PatchEmbed,
    PixArtAlphaTextProjection,
    get_2d_rotary_pos_embed,
)
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous
from diffusers.models.transformers.hunyuan_transformer_2d import HunyuanDiTBlock
from torch import nn

from .pixart import FP32LayerNorm, PositionalEncoding

FRAME_POSITIONS = 512  # rows of the per-frame position table (t_embed.pe)
ROPE_BASE = 512 // 8  # RoPE grids are placed in a 512-pixel frame (64 latents), as the original
VAE_SCALE = 8  # pixels per latent in height and width


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """(grid^2, dim) MAE-style 2D sin-cos positions (height half, width half), float32."""
    half = dim // 2

    def one_axis(positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(half // 2, dtype=np.float32) / (half / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    width, height = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one_axis(width), one_axis(height)], axis=1)


class Resampler(nn.Module):
    """Qwen-VL's perceiver resampler: ``grid_size^2`` learned queries attend to the (projected) CLIP tokens.

    ``nn.MultiheadAttention`` as in the original (its ``out_proj`` is not a ``nn.Linear`` subclass the original's
    LoRA matches, so it is not adapted; see :mod:`hf_easyanimate.models.lora`).
    """

    def __init__(self, grid_size: int, embed_dim: int, num_heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.num_queries = grid_size**2
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(embed_dim, grid_size)).float(), requires_grad=False)
        self.query = nn.Parameter(torch.zeros(self.num_queries, embed_dim))
        nn.init.normal_(self.query, std=0.02)
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim and kv_dim != embed_dim else nn.Identity()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim)
        self.ln_kv = nn.LayerNorm(embed_dim)

    def _positions(self, length: int) -> torch.Tensor:
        """The query grid's positions resized (bicubic) to a square grid of ``length`` tokens."""
        source, target = int(math.sqrt(self.pos_embed.shape[0])), int(math.sqrt(length))
        if source == target:
            return self.pos_embed
        grid = self.pos_embed.float().reshape(1, source, source, -1).permute(0, 3, 1, 2)
        resized = F.interpolate(grid, size=(target, target), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1).flatten(0, 2).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = self._positions(x.shape[1])
        x = self.ln_kv(self.kv_proj(x)).permute(1, 0, 2)  # (L, N, C)
        queries = self.ln_q(self.query).unsqueeze(1).repeat(1, x.shape[1], 1)
        out = self.attn(queries + self.pos_embed.unsqueeze(1), x + positions.unsqueeze(1), x)[0]
        return out.permute(1, 0, 2)


class GEGLU(nn.Module):
    """The CLIP branch's gate. Its LayerNorm gets ``dim`` as *eps* (the original passes it positionally)."""

    def __init__(self, dim_in: int, dim_out: int, norm_elementwise_affine: bool) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(dim_in, dim_in, norm_elementwise_affine)
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(self.norm(x)).chunk(2, dim=-1)
        return x * F.gelu(gate)


class HunyuanVideoBlock(HunyuanDiTBlock):
    """diffusers' HunyuanDiT block plus the per-frame position and the CLIP cross-attention of V4."""

    def __init__(self, dim: int, num_attention_heads: int, activation_fn: str, ff_inner_dim: int,
                 cross_attention_dim: int, skip: bool, after_norm: bool, time_position_encoding: bool,
                 enable_inpaint: bool, norm_elementwise_affine: bool = True, norm_eps: float = 1e-6) -> None:
        super().__init__(dim=dim, num_attention_heads=num_attention_heads, cross_attention_dim=cross_attention_dim,
                         activation_fn=activation_fn, ff_inner_dim=ff_inner_dim, skip=skip, qk_norm=True,
                         norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps)
        self.t_embed = PositionalEncoding(dim, FRAME_POSITIONS) if time_position_encoding else nn.Identity()
        if enable_inpaint:
            self.norm_clip = FP32LayerNorm(dim, norm_eps, norm_elementwise_affine)
            self.attn_clip = Attention(query_dim=dim, cross_attention_dim=cross_attention_dim,
                                       dim_head=dim // num_attention_heads, heads=num_attention_heads,
                                       qk_norm="layer_norm", eps=1e-6, bias=True, processor=HunyuanAttnProcessor2_0())
            self.gate_clip = GEGLU(dim, dim, norm_elementwise_affine)
            self.norm_clip_out = FP32LayerNorm(dim, norm_eps, norm_elementwise_affine)
        else:
            self.norm_clip = self.attn_clip = self.gate_clip = self.norm_clip_out = None
        self.norm4 = FP32LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps) if after_norm \
            else None

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                image_rotary_emb, skip: torch.Tensor | None, frames: int, tokens_per_frame: int,
                clip_encoder_hidden_states: torch.Tensor | None, rope_in_self_attention: bool) -> torch.Tensor:
        if self.skip_linear is not None:
            hidden_states = self.skip_linear(self.skip_norm(torch.cat([hidden_states, skip], dim=-1)))
        if image_rotary_emb is not None:  # one frame's RoPE, tiled over the frames
            image_rotary_emb = tuple(part.repeat(frames, 1) for part in image_rotary_emb)
        if frames != 1 and not isinstance(self.t_embed, nn.Identity):
            batch, length, channels = hidden_states.shape
            per_pixel = hidden_states.reshape(batch, frames, tokens_per_frame, channels).transpose(1, 2)
            per_pixel = self.t_embed(per_pixel.reshape(-1, frames, channels))
            hidden_states = per_pixel.reshape(batch, tokens_per_frame, frames, channels).transpose(1, 2).reshape(
                batch, length, channels)
        attention = self.attn1(self.norm1(hidden_states, temb),
                               image_rotary_emb=image_rotary_emb if rope_in_self_attention else None)
        hidden_states = hidden_states + attention
        hidden_states = hidden_states + self.attn2(self.norm2(hidden_states),
                                                   encoder_hidden_states=encoder_hidden_states,
                                                   image_rotary_emb=image_rotary_emb)
        if self.attn_clip is not None:
            clip = self.attn_clip(self.norm_clip(hidden_states), encoder_hidden_states=clip_encoder_hidden_states,
                                  image_rotary_emb=image_rotary_emb)
            hidden_states = hidden_states + self.norm_clip_out(self.gate_clip(clip))
        output = self.ff(self.norm3(hidden_states))
        return hidden_states + (self.norm4(output) if self.norm4 is not None else output)


def resize_crop_region(grid: tuple[int, int], base: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a (h, w) latent grid sits, resized and centred, in a ``base`` x ``base`` one (HunyuanDiT's RoPE)."""
    height, width = grid
    if height / width > 1:
        resize_height, resize_width = base, int(round(base / height * width))
    else:
        resize_width, resize_height = base, int(round(base / width * height))
    top, left = int(round((base - resize_height) / 2.0)), int(round((base - resize_width) / 2.0))
    return (top, left), (top + resize_height, left + resize_width)


class HunyuanTransformer3DModel(ModelMixin, ConfigMixin):
    """EasyAnimate V4 transformer; see the module docstring."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["HunyuanVideoBlock"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 88,
        in_channels: int | None = None,
        out_channels: int | None = None,
        patch_size: int | None = None,
        n_query: int = 16,
        projection_dim: int = 768,
        activation_fn: str = "gelu-approximate",
        sample_size: int = 32,
        hidden_size: int = 1152,
        num_layers: int = 28,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        cross_attention_dim: int = 1024,
        norm_type: str = "layer_norm",
        cross_attention_dim_t5: int = 2048,
        pooled_projection_dim: int = 1024,
        text_len: int = 77,
        text_len_t5: int = 256,
        basic_block_type: str = "basic",
        time_position_encoding: bool = False,
        time_position_encoding_type: str = "2d_rope",
        after_norm: bool = False,
        resize_inpaint_mask_directly: bool = False,
        enable_clip_in_inpaint: bool = True,
        enable_text_attention_mask: bool = True,
        add_noise_in_inpaint_model: bool = False,
        position_of_clip_embedding: str = "full",
    ) -> None:
        super().__init__()
        if basic_block_type != "basic":
            raise ValueError(f"V4 basic_block_type {basic_block_type!r} is not ported (only 'basic', what V4 uses)")
        if time_position_encoding_type != "2d_rope":
            raise ValueError(f"V4 time_position_encoding_type {time_position_encoding_type!r} is not ported")
        if learn_sigma:
            self.out_channels = in_channels * 2 if out_channels is None else out_channels
            self.enable_inpaint = in_channels * 2 != self.out_channels
        else:
            self.out_channels = in_channels if out_channels is None else out_channels
            self.enable_inpaint = in_channels != self.out_channels
        self.inner_dim = num_attention_heads * attention_head_dim
        self.text_embedder = PixArtAlphaTextProjection(in_features=cross_attention_dim_t5,
                                                       hidden_size=cross_attention_dim_t5 * 4,
                                                       out_features=cross_attention_dim, act_fn="silu_fp32")
        self.text_embedding_padding = nn.Parameter(torch.randn(text_len + text_len_t5, cross_attention_dim))
        self.pos_embed = PatchEmbed(height=sample_size, width=sample_size, in_channels=in_channels,
                                    embed_dim=hidden_size, patch_size=patch_size, pos_embed_type=None)
        self.time_extra_emb = HunyuanCombinedTimestepTextSizeStyleEmbedding(
            hidden_size, pooled_projection_dim=pooled_projection_dim, seq_len=text_len_t5,
            cross_attention_dim=cross_attention_dim_t5,
        )
        clip = self.enable_inpaint and enable_clip_in_inpaint
        self.blocks = nn.ModuleList(
            HunyuanVideoBlock(self.inner_dim, num_attention_heads, activation_fn, int(self.inner_dim * mlp_ratio),
                              cross_attention_dim, skip=layer > num_layers // 2, after_norm=after_norm,
                              time_position_encoding=time_position_encoding, enable_inpaint=clip)
            for layer in range(num_layers)
        )
        self.n_query = n_query
        if clip:
            self.clip_padding = nn.Parameter(torch.randn((n_query, cross_attention_dim)) * 0.02)
            self.clip_projection = Resampler(int(math.sqrt(n_query)), cross_attention_dim, num_attention_heads,
                                             kv_dim=projection_dim)
        else:
            self.clip_padding = self.clip_projection = None
        self.norm_out = AdaLayerNormContinuous(self.inner_dim, self.inner_dim, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(self.inner_dim, patch_size * patch_size * self.out_channels, bias=True)
        self.gradient_checkpointing = False

    # What the CLIP image encoder hands this model: its patch tokens (last hidden state without the class token).
    reference_image_features = "patch_tokens"

    @property
    def clip_tokens(self) -> int | None:
        """Length of the CLIP attention mask (``n_query``), None without a CLIP branch."""
        return self.n_query if self.clip_projection is not None else None

    def training_inputs(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, prompt: dict,
                        inpaint_latents: torch.Tensor | None = None,
                        clip_encoder_hidden_states: torch.Tensor | None = None,
                        clip_attention_mask: torch.Tensor | None = None) -> dict:
        """The keywords of one training forward, built as the original V4 trainer builds them: timesteps as floats,
        both text masks, ``image_meta_size = (1024, 1024, H, W, 0, 0)`` and style 0 per sample, and the RoPE of
        the batch's pixel size."""
        batch, _, _, height, width = noisy_latents.shape
        height, width = height * VAE_SCALE, width * VAE_SCALE
        device = noisy_latents.device
        hidden = prompt["encoder_hidden_states"]
        meta = torch.tensor([[1024, 1024, height, width, 0, 0]], dtype=hidden.dtype, device=device).repeat(batch, 1)
        return {
            "hidden_states": noisy_latents,
            "timestep": timesteps.to(noisy_latents.dtype),
            "encoder_hidden_states": hidden,
            "text_embedding_mask": prompt["encoder_attention_mask"],
            "encoder_hidden_states_t5": prompt["encoder_hidden_states_t5"],
            "text_embedding_mask_t5": prompt["encoder_attention_mask_t5"],
            "image_meta_size": meta,
            "style": torch.zeros(batch, dtype=torch.long, device=device),
            "image_rotary_emb": self.rotary_embedding(height, width, device=device),
            "inpaint_latents": inpaint_latents,
            "clip_encoder_hidden_states": clip_encoder_hidden_states,
            "clip_attention_mask": clip_attention_mask,
            "return_dict": False,
        }

    def rotary_embedding(self, height: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2D RoPE of one frame of a (height, width) *pixel* batch, as the original's training loop builds it."""
        patch = self.config.patch_size
        grid = (height // 8 // patch, width // 8 // patch)
        region = resize_crop_region(grid, ROPE_BASE // patch)
        cos, sin = get_2d_rotary_pos_embed(self.config.attention_head_dim, region, grid)
        return cos.to(device), sin.to(device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        text_embedding_mask: torch.Tensor | None = None,
        encoder_hidden_states_t5: torch.Tensor | None = None,
        text_embedding_mask_t5: torch.Tensor | None = None,
        image_meta_size: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
        image_rotary_emb=None,
        inpaint_latents: torch.Tensor | None = None,
        control_latents: torch.Tensor | None = None,
        clip_encoder_hidden_states: torch.Tensor | None = None,
        clip_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        if control_latents is not None:
            raise ValueError("control_latents are not used by EasyAnimate V4")
        if inpaint_latents is not None:
            hidden_states = torch.cat([hidden_states, inpaint_latents], dim=1)
        patch = self.pos_embed.patch_size
        batch, _, frames, height, width = hidden_states.shape
        height, width = height // patch, width // patch
        per_frame = hidden_states.transpose(1, 2).reshape(batch * frames, -1, *hidden_states.shape[-2:])
        hidden_states = self.pos_embed(per_frame).reshape(batch, frames * height * width, -1)

        # The original's loop passes timesteps in the weights' dtype (``timesteps.to(noisy_latents.dtype)``); a
        # float32 timestep beside bf16 weights (DeepSpeed) takes the same cast here.
        timestep = timestep.to(self.proj_out.weight.dtype)
        temb = self.time_extra_emb(timestep, encoder_hidden_states_t5, image_meta_size, style,
                                   hidden_dtype=timestep.dtype)
        length = encoder_hidden_states_t5.shape[1]
        t5 = self.text_embedder(encoder_hidden_states_t5.view(-1, encoder_hidden_states_t5.shape[-1]))
        encoder_hidden_states = torch.cat([encoder_hidden_states, t5.view(batch, length, -1)], dim=1)
        keep = torch.cat([text_embedding_mask, text_embedding_mask_t5], dim=-1).unsqueeze(2).bool()
        encoder_hidden_states = torch.where(keep, encoder_hidden_states, self.text_embedding_padding)
        if clip_encoder_hidden_states is not None:
            clip = self.clip_projection(clip_encoder_hidden_states).view(batch, -1, encoder_hidden_states.shape[-1])
            clip_encoder_hidden_states = torch.where(clip_attention_mask.unsqueeze(2).bool(), clip, self.clip_padding)

        skips: list[torch.Tensor] = []
        half = self.config.num_layers // 2
        for layer, block in enumerate(self.blocks):
            skip = skips.pop() if layer > half else None
            arguments = (hidden_states, encoder_hidden_states, temb, image_rotary_emb, skip, frames, height * width,
                         clip_encoder_hidden_states, layer != 0)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, *arguments)
            else:
                hidden_states = block(*arguments)
            if layer < half - 1:
                skips.append(hidden_states)

        hidden_states = self.proj_out(self.norm_out(hidden_states, temb.to(torch.float32)))
        hidden_states = hidden_states.reshape(batch, frames, height, width, patch, patch, self.out_channels)
        output = torch.einsum("nfhwpqc->ncfhpwq", hidden_states).reshape(
            batch, self.out_channels, frames, height * patch, width * patch
        )
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)
