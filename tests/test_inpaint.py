"""Training builds ``inpaint_latents`` exactly as diffusers' EasyAnimateInpaintPipeline feeds the transformer."""

from __future__ import annotations

import torch
from diffusers import EasyAnimateInpaintPipeline

from hf_easyanimate.models.inpaint import InpaintConditioner, empty_inpaint_latents, masked_pixels
from hf_easyanimate.models.vae import encode_pixels

FRAMES, SIZE = 5, 32


def pipeline_inpaint_latents(pipe, video01: torch.Tensor, mask_video: torch.Tensor) -> torch.Tensor:
    """Run the real pipeline for one step and capture the ``inpaint_latents`` it hands the transformer."""
    captured = {}

    def grab(module, args, kwargs):
        captured.setdefault("inpaint_latents", kwargs["inpaint_latents"].clone())

    handle = pipe.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipe("a red disc", negative_prompt="", video=video01, mask_video=mask_video, num_frames=FRAMES,
             height=SIZE, width=SIZE, num_inference_steps=1, guidance_scale=1.0, noise_aug_strength=0.0,
             generator=torch.Generator().manual_seed(0), output_type="latent")
    finally:
        handle.remove()
    return captured["inpaint_latents"]


def test_conditioning_matches_the_diffusers_inpaint_pipeline(tiny_inpaint_model_dir):
    pipe = EasyAnimateInpaintPipeline.from_pretrained(tiny_inpaint_model_dir)
    generator = torch.Generator().manual_seed(0)
    video01 = torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=generator)  # pipeline input: [0, 1], B C F H W
    mask_video = torch.zeros(1, 1, FRAMES, SIZE, SIZE)
    mask_video[:, :, 1:] = 255  # image-to-video: keep frame 0 ...
    mask_video[:, :, 0, :, SIZE // 2 :] = 255  # ... but only its left half
    expected = pipeline_inpaint_latents(pipe, video01, mask_video)

    pixel_values = (video01 * 2 - 1).permute(0, 2, 1, 3, 4)  # training batch: [-1, 1], B F C H W
    mask = (mask_video / 255).permute(0, 2, 1, 3, 4).to(torch.uint8)
    vae = pipe.vae
    latents = encode_pixels(vae, pixel_values, 1)
    conditioner = InpaintConditioner(scaling_factor=vae.config.scaling_factor, add_noise_to_reference=False)
    ours = conditioner(pixel_values, mask, latents, lambda px, sample: encode_pixels(vae, px, 1, sample=sample))
    assert ours.shape == expected.shape == (1, 1 + latents.shape[1], *latents.shape[2:])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # Mask channel: 1 = shown, frame 0 resized on its own (half visible), later frames fully generated.
    sf = vae.config.scaling_factor
    torch.testing.assert_close(ours[0, 0, 0].mean(), torch.tensor(0.5 * sf))
    assert ours[0, 0, 1:].abs().max() == 0


def test_fully_masked_samples_get_zero_conditioning_like_text_to_video():
    pixel_values = torch.rand(2, 5, 3, 16, 16) * 2 - 1
    mask = torch.ones(2, 5, 1, 16, 16, dtype=torch.uint8)
    mask[1, 0] = 0  # sample 1 shows its first frame
    latents = torch.randn(2, 4, 2, 2, 2)
    conditioner = InpaintConditioner(scaling_factor=0.7, add_noise_to_reference=False)
    out = conditioner(pixel_values, mask, latents, lambda px, sample: torch.ones(px.shape[0], 4, 2, 2, 2))
    assert out[0].abs().max() == 0
    assert out[1, 1:].eq(1).all() and out[1, 0, 0].eq(0.7).all() and out[1, 0, 1].eq(0).all()
    assert torch.equal(empty_inpaint_latents(latents), torch.zeros(2, 5, 2, 2, 2))


def test_reference_noise_leaves_masked_pixels_at_minus_one():
    pixel_values = torch.rand(3, 5, 3, 16, 16) * 2 - 1
    mask = torch.zeros(3, 5, 1, 16, 16, dtype=torch.uint8)
    mask[:, 1:] = 1
    seen = {}

    def encode(px, sample=False):
        seen["reference"] = px
        return torch.zeros(px.shape[0], 4, 2, 2, 2)

    torch.manual_seed(0)
    InpaintConditioner(scaling_factor=1.0, add_noise_to_reference=True)(
        pixel_values, mask, torch.zeros(3, 4, 2, 2, 2), encode
    )
    reference = seen["reference"]
    assert reference[:, 1:].eq(-1).all()  # masked frames untouched
    shown = reference[:, 0] - pixel_values[:, 0]
    assert shown.abs().max() > 0  # noise on the kept frame ...
    assert shown.std() < 0.5  # ... of a small strength, sigma = exp(N(-3, 0.5))
    assert torch.equal(masked_pixels(pixel_values, mask)[:, 0], pixel_values[:, 0])
