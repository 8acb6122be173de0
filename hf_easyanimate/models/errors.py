"""The errors of model loading, in one place so that every loader and family raises the same ones."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The model repo cannot be used; the message names the repo and the component."""


class UnsupportedModelError(ModelLoadError):
    """The checkpoint's architecture (or the objective it needs) has no implementation here."""


SUPPORTED = (
    "hf-easyanimate trains EasyAnimate V5.1 (--loss_type flow), V5 and V4 (--loss_type ddpm), V3 and V2 "
    "(--loss_type sigma), --train_mode normal or inpaint. Start from a recipe: recipes/v5.1/inp_lora.yaml, "
    "recipes/v5/inp_lora.yaml, recipes/v4/inp_lora.yaml, recipes/v3/inp_lora.yaml or recipes/v2/lora.yaml."
)
# What the generations that are not trained here would need.
MISSING_COMPONENTS = {
    "v1": "the Transformer3DModel transformer with motion modules over a 2D VAE (EasyAnimate V1), which is not ported",
}


class IncompatibleFlagError(ValueError):
    """A flag's value cannot work with this checkpoint (found from its configs, before any weight loads); the
    message names the flag and the value to use."""
