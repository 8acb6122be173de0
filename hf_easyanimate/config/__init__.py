"""The run's configuration: the argument dataclasses by concern (model, data, the training arguments every trainer
shares), the recipe parser, the original-flag dialect, the launcher environment and the flag docs. Nothing here
reads a checkpoint; each trainer's own config extends :class:`BaseTrainingArguments` (``hf_easyanimate/trainers/``).
"""

from .data import DataArguments
from .dialect import LEGACY_FLAGS, LegacyFlagConflict, translate_legacy
from .model import TRAIN_MODES, ModelArguments
from .parser import RecipeError, load_recipe, parse_dataclasses, parse_flag_values
from .rules import SIZE_GRID, ArgumentValidationError, check_combination, note_off_grid_frames
from .training import SAVE_LORA_FORMATS, STORAGE_DTYPE_NAMES, BaseTrainingArguments

__all__ = [
    "LEGACY_FLAGS",
    "SAVE_LORA_FORMATS",
    "SIZE_GRID",
    "STORAGE_DTYPE_NAMES",
    "TRAIN_MODES",
    "ArgumentValidationError",
    "BaseTrainingArguments",
    "DataArguments",
    "LegacyFlagConflict",
    "ModelArguments",
    "RecipeError",
    "check_combination",
    "load_recipe",
    "note_off_grid_frames",
    "parse_dataclasses",
    "parse_flag_values",
    "translate_legacy",
]
