"""The model card and the Hub push of a LoRA run: exactly the LoRA files, the recipe and the card are uploaded (and,
with ``--hub_strategy checkpoint|all_checkpoints``, the resume state of a checkpoint). A mixin of
:class:`~hf_easyanimate.trainers.base.BaseTrainer`."""

from __future__ import annotations

import os

from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils.hub import PushInProgress

from ..training import hub
from ..utils.atomic import atomic_copy, atomic_path


def _hf_api():
    """The HfApi instance Trainer itself uses (one place to mock in tests)."""
    from transformers.utils.hub import hf_api

    return hf_api()


class HubPublishing:
    """``create_model_card``, ``push_to_hub`` and the push after each save, for a LoRA."""

    def card_facts(self) -> hub.CardFacts:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        config = model.peft_config["default"]
        base = model.get_base_model().config
        train_mode = getattr(self.model_args, "train_mode", "normal")
        image_to_video = train_mode == "inpaint" or base.in_channels != self.encoders.vae.config.latent_channels
        family = getattr(self, "family", None)
        return hub.CardFacts(
            base_model=config.base_model_name_or_path,
            image_to_video=image_to_video,
            pipeline=family.pipeline_names[int(image_to_video)] if family is not None else None,
            dataset_size=len(self.train_dataset) if self.train_dataset is not None else None,
            steps=self.state.global_step,
            epochs=self.state.epoch,
            losses=hub.loss_curve_points(self.state.log_history),
            recipe=self.recipe(),
            rank=config.r,
            alpha=config.lora_alpha,
            repo_id=self.hub_model_id,
            metrics=hub.final_metrics(self.state.log_history),
        )

    def create_model_card(self, **kwargs) -> None:
        """Our card (base model, recipe, data size, steps, loss curve, how to load) instead of Trainer's."""
        if not self.is_world_process_zero():
            return
        with atomic_path(os.path.join(self.args.output_dir, hub.MODEL_CARD_NAME)) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(hub.model_card_text(self.card_facts()))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Trainer's push, but the commit lists the LoRA files, recipe and model card explicitly: nothing else."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card()
        self._finish_current_push()
        folder = self.args.output_dir
        return hub.push_files(
            _hf_api(), self.hub_model_id, folder, hub.hub_files(folder, self._lora_formats()),
            commit_message=commit_message, token=token,
            revision=revision if revision is not None else self.args.hub_revision, run_as_future=not blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push after each save (``--hub_strategy`` every_save | checkpoint | all_checkpoints), as Trainer does."""
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = self.args.output_dir
        # The latest adapter becomes the repo's top level, copied (not re-gathered) from the checkpoint.
        formats = self._lora_formats()
        for name in hub.hub_files(checkpoint_folder, formats):
            if name != hub.MODEL_CARD_NAME:
                atomic_copy(os.path.join(checkpoint_folder, name), os.path.join(output_dir, name))
        self.create_model_card()
        if self.args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch or 0)}"
        api, common = _hf_api(), {"token": self.args.hub_token, "revision": self.args.hub_revision}
        jobs = [hub.push_files(api, self.hub_model_id, output_dir, hub.hub_files(output_dir, formats),
                               commit_message=message, run_as_future=True, **common)]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = (
                "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT
                else os.path.basename(os.path.normpath(checkpoint_folder))
            )
            # The checkpoint keeps its peft adapter whatever the format: resuming needs it.
            names = [n for n in hub.hub_files(checkpoint_folder, include_resume_state=True) if n != hub.MODEL_CARD_NAME]
            jobs.append(hub.push_files(api, self.hub_model_id, checkpoint_folder, names, path_in_repo=path_in_repo,
                                       commit_message=message + ", checkpoint", run_as_future=True, **common))
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)
