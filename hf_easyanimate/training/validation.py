"""Validation sampling during training: the current LoRA through the real diffusers EasyAnimate pipeline.

Every ``--validation_steps`` steps and/or after epoch 1, 1 + N, ... for ``--validation_epochs`` N (either one
alone is the only schedule; neither given means both, at the original's 2000 steps and 5 epochs), the main process samples ``--validation_prompts`` with an ``EasyAnimatePipeline`` (or
``EasyAnimateInpaintPipeline`` for InP checkpoints) assembled from the frozen components and the live,
LoRA-wrapped transformer. It writes ``output_dir/validation/step-N/prompt-XX.mp4`` and ``contact_sheet.png``
and logs the sheet to TensorBoard (into the event file of Trainer's own ``TensorBoardCallback``) and to
wandb when that tracker is active. Other processes wait at a barrier. Sampling runs with its own seeded
generator inside :func:`~hf_easyanimate.training.evaluation.preserved_rng_state`, so the training RNG stream is the
same with or without validation, and the transformer goes back to train mode afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from ..data.buckets import frames_on_vae_grid
from ..utils.media import (
    CONTACT_SHEET,
    METRICS_FILE,
    VALIDATION_DIR,
    atomic_path,
    contact_sheet,
    printable,
    to_uint8_frames,
    write_mp4,
    write_png,
)
from .evaluation import preserved_rng_state

logger = logging.getLogger(__name__)


@dataclass
class ValidationSettings:
    """What to sample; built from the training and data arguments by :meth:`from_args`."""

    prompts: list[str]
    images: list[str] | None = None
    num_frames: int = 17
    height: int = 512
    width: int = 512
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    negative_prompt: str = "bad detailed"
    seed: int = 42
    fps: int = 8

    @classmethod
    def from_args(cls, args, data_args) -> ValidationSettings:
        return cls(
            prompts=list(args.validation_prompts),
            images=list(args.validation_images) if args.validation_images else None,
            num_frames=args.validation_num_frames or frames_on_vae_grid(data_args.video_sample_n_frames, 4),
            height=data_args.video_sample_size,
            width=data_args.video_sample_size,
            num_inference_steps=args.validation_num_inference_steps,
            guidance_scale=args.validation_guidance_scale,
            negative_prompt=args.validation_negative_prompt,
            seed=args.seed,
        )

    def image_for(self, index: int) -> str | None:
        if not self.images:
            return None
        return self.images[0] if len(self.images) == 1 else self.images[index]


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def _on_device(modules: Sequence[torch.nn.Module], device: torch.device) -> Iterator[None]:
    """Move modules to ``device`` for the block (``--low_vram`` keeps the encoders on CPU) and back."""
    homes = [_device_of(module) for module in modules]
    for module in modules:
        module.to(device)
    try:
        yield
    finally:
        for module, home in zip(modules, homes):
            module.to(home)


class ValidationSampler:
    """Samples the validation prompts with a diffusers pipeline built around a given transformer."""

    def __init__(self, vae, text_encoder, tokenizer, scheduler, settings: ValidationSettings,
                 weight_dtype: torch.dtype = torch.float32) -> None:
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler  # each sampling gets a fresh copy from its config
        self.settings = settings
        self.weight_dtype = weight_dtype

    def _pipeline(self, transformer: torch.nn.Module):
        from ..models.pipelines import training_pipeline

        return training_pipeline(self.vae, self.text_encoder, self.tokenizer, self.scheduler, transformer)

    def _inpaint_inputs(self, index: int) -> dict:
        from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
        from PIL import Image

        settings = self.settings
        path = settings.image_for(index)
        image = Image.open(path).convert("RGB") if path else None
        video, mask = get_image_to_video_latent(image, None, settings.num_frames, [settings.height, settings.width])
        return {"video": video, "mask_video": mask}

    @torch.no_grad()
    def sample(self, transformer: torch.nn.Module) -> list[np.ndarray]:
        """One (F, H, W, 3) uint8 video per prompt, from ``transformer`` as it is now (LoRA included)."""
        settings = self.settings
        device = _device_of(transformer)
        was_training = transformer.training
        pipeline, inpaint = self._pipeline(transformer)
        autocast = torch.autocast(device.type, dtype=self.weight_dtype, enabled=self.weight_dtype != torch.float32)
        videos = []
        transformer.eval()
        try:
            with preserved_rng_state(), _on_device([self.vae, self.text_encoder], device), autocast:
                for index, prompt in enumerate(settings.prompts):
                    generator = torch.Generator("cpu").manual_seed(settings.seed + index)
                    output = pipeline(
                        prompt=prompt,
                        negative_prompt=settings.negative_prompt,  # diffusers' CFG path needs one (None fails)
                        num_frames=settings.num_frames,
                        height=settings.height,
                        width=settings.width,
                        num_inference_steps=settings.num_inference_steps,
                        guidance_scale=settings.guidance_scale,
                        generator=generator,
                        output_type="np",
                        **(self._inpaint_inputs(index) if inpaint else {}),
                    )
                    videos.append(to_uint8_frames(np.asarray(output.frames[0], dtype=np.float32)))
        finally:
            transformer.train(was_training)
        return videos


def save_validation(folder: str, videos: Sequence[np.ndarray], settings: ValidationSettings, step: int) -> dict:
    """Write one mp4 per prompt, the contact sheet and a ``samples.json`` index; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    mp4s = []
    for index, video in enumerate(videos):
        path = os.path.join(folder, f"prompt-{index:02d}.mp4")
        write_mp4(path, video, fps=settings.fps)
        mp4s.append(path)
    sheet = contact_sheet(videos, [f"{i}: {prompt}" for i, prompt in enumerate(settings.prompts)])
    sheet_path = os.path.join(folder, CONTACT_SHEET)
    write_png(sheet_path, sheet)
    index_path = os.path.join(folder, "samples.json")
    with atomic_path(index_path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        record = {"step": step, "videos": [os.path.basename(p) for p in mp4s], "contact_sheet": CONTACT_SHEET,
                  **asdict(settings)}
        record["prompts"] = [printable(prompt) for prompt in record["prompts"]]
        json.dump(record, handle, indent=2, ensure_ascii=False)
    return {"videos": mp4s, "contact_sheet": sheet_path, "sheet": sheet}


class DiffusersTensorBoardCallback(TensorBoardCallback):
    """Trainer's TensorBoard logging for a diffusers model.

    The stock callback logs ``model.config.to_json_string()`` at train begin, which transformers configs have and
    diffusers' ``FrozenDict`` configs do not (it raises AttributeError); this one logs the config as JSON itself.
    """

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        config = getattr(model, "config", None)
        if self.tb_writer is not None and isinstance(config, dict):
            self.tb_writer.add_text("model_config", json.dumps(dict(config), indent=2, default=str))


def use_diffusers_tensorboard(trainer) -> None:
    """Swap Trainer's ``TensorBoardCallback`` (if ``report_to`` asked for one) for :class:`DiffusersTensorBoardCallback`."""
    handler = trainer.callback_handler
    for index, callback in enumerate(handler.callbacks):
        if type(callback) is TensorBoardCallback:
            replacement = DiffusersTensorBoardCallback(tb_writer=callback.tb_writer)
            replacement.logging_dir = callback.logging_dir
            handler.callbacks[index] = replacement


def _moviepy_available() -> bool:
    try:
        import moviepy  # noqa: F401
    except ImportError:
        return False
    return True


class ValidationCallback(TrainerCallback):
    """Samples the validation prompts on schedule; see the module docstring.

    ``tensorboard`` is Trainer's ``TensorBoardCallback`` (if any): its writer is reused so the validation images
    land in the same event file as the losses.
    """

    def __init__(self, sampler: ValidationSampler, every_steps: int | None, every_epochs: int | None,
                 tensorboard: TrainerCallback | None = None, embedder=None) -> None:
        self.sampler = sampler
        self.every_steps = every_steps
        self.every_epochs = every_epochs
        self.tensorboard = tensorboard
        self.embedder = embedder  # a metrics.clip.ClipEmbedder: score the clips (None: no CLIP metrics)
        self.last_step: int | None = None
        self.failures = 0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self.validate(args, state, model)
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = state.epoch or 0.0
        finished = round(epoch)  # 1 after the first epoch
        # Trainer also calls on_epoch_end when max_steps stops it mid-epoch; only whole epochs count.
        if not self.every_epochs:
            return control
        if abs(epoch - finished) < 1e-6 and finished >= 1 and (finished - 1) % self.every_epochs == 0:
            self.validate(args, state, model)
        return control

    def validate(self, args, state, model: torch.nn.Module) -> dict | None:
        """Sample on the main process (others wait); skipped if this step was already sampled."""
        from accelerate import PartialState

        if self.last_step == state.global_step:
            return None
        self.last_step = state.global_step
        written = None
        try:
            if state.is_world_process_zero:
                written = self._sample_and_save(args, state, model)
        except Exception:  # a failed sample must not end a long run (the original also carries on)
            logger.exception("validation at step %d failed; training continues", state.global_step)
            self.failures += 1
        finally:
            PartialState().wait_for_everyone()
        return written

    def _sample_and_save(self, args, state, model: torch.nn.Module) -> dict:
        from accelerate.utils import extract_model_from_parallel

        transformer = extract_model_from_parallel(model)
        if hasattr(transformer, "get_base_model"):
            transformer = transformer.get_base_model()  # the peft model: LoRA layers stay in place
        start = time.perf_counter()
        videos = self.sampler.sample(transformer)
        folder = os.path.join(args.output_dir, VALIDATION_DIR, f"step-{state.global_step}")
        written = save_validation(folder, videos, self.sampler.settings, state.global_step)
        if self.embedder is not None:
            written["metrics"] = self._score(folder, state, videos)
        self._log(args, state, written, videos)
        logger.info("validation: %d prompt(s) sampled in %.1fs -> %s", len(videos), time.perf_counter() - start,
                    folder)
        return written

    def _score(self, folder: str, state, videos: list[np.ndarray]) -> dict[str, float]:
        """CLIP metrics of this step's clips: ``metrics.json`` beside them and an entry of Trainer's log history
        (what ``report`` plots and the model card quotes)."""
        from ..metrics.clip import clip_metrics

        prompts = self.sampler.settings.prompts
        metrics = clip_metrics(self.embedder, videos, prompts)
        per_prompt = [clip_metrics(self.embedder, [video], [prompt]) for video, prompt in zip(videos, prompts)]
        with atomic_path(os.path.join(folder, METRICS_FILE)) as temporary, open(temporary, "w", encoding="utf-8") as out:
            json.dump({"step": state.global_step, **metrics,
                       "per_prompt": [{"prompt": printable(p), **m} for p, m in zip(prompts, per_prompt)]},
                      out, indent=2, ensure_ascii=False)
        state.log_history.append({**metrics, "step": state.global_step})
        return metrics

    def _log(self, args, state, written: dict, videos: list[np.ndarray]) -> None:
        writer = getattr(self.tensorboard, "tb_writer", None)
        if writer is not None:
            for key, value in written.get("metrics", {}).items():
                writer.add_scalar(f"validation/{key}", value, state.global_step)
            writer.add_image("validation/contact_sheet", written["sheet"], state.global_step, dataformats="HWC")
            if _moviepy_available():  # add_video encodes GIFs with moviepy; without it the sheet suffices
                for index, video in enumerate(videos):
                    clip = torch.from_numpy(video).permute(0, 3, 1, 2).unsqueeze(0)
                    writer.add_video(f"validation/prompt_{index:02d}", clip, state.global_step,
                                     fps=self.sampler.settings.fps)
            writer.flush()
        report_to = args.report_to or []
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError:
                return
            if wandb.run is not None:
                wandb.log({
                    **{f"validation/{key}": value for key, value in written.get("metrics", {}).items()},
                    "validation/contact_sheet": wandb.Image(written["contact_sheet"]),
                    "validation/videos": [wandb.Video(path, format="mp4") for path in written["videos"]],
                    "train/global_step": state.global_step,
                })
