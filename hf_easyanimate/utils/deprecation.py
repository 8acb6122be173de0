"""Old import paths keep working for one release: importing one warns once and forwards every name to its new home.

The 0.1 layout had modules loose at the package root (``hf_easyanimate.args``, ``.parser``, ``.trainer``, ...).
Rather than leave a three-line shim file for each beside the real code, one table maps every old path to the
module(s) that hold its names now, and an import hook builds a forwarding module from it. A module that was split
(``legacy`` became the original-flag dialect in ``config/`` and the original-YAML reading in ``models/``) forwards
to several; names are looked up in order.

Why not ``sys.modules`` aliases: the import system rebinds ``__spec__`` of whatever module the loader returns, so
aliasing a real module under a second name would corrupt it. A forwarding module leaves the real one untouched;
the one thing it cannot do is pass ``monkeypatch.setattr("old.path.name", ...)`` through, which the package's own
tests therefore do on the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

REMOVED_IN = "0.3"
# old module -> the modules that hold its public names now, searched in order.
MOVED: dict[str, tuple[str, ...]] = {
    "hf_easyanimate.args": ("hf_easyanimate.config", "hf_easyanimate.config.rules", "hf_easyanimate.config.training",
                            "hf_easyanimate.trainers.lora_config"),
    "hf_easyanimate.parser": ("hf_easyanimate.trainers.lora_config", "hf_easyanimate.config.parser",
                              "hf_easyanimate.commands.common", "hf_easyanimate.commands.train"),
    "hf_easyanimate.flagdocs": ("hf_easyanimate.config.flagdocs",),
    "hf_easyanimate.legacy": ("hf_easyanimate.config.dialect", "hf_easyanimate.models.original_config",
                              "hf_easyanimate.models.loading",
                              "hf_easyanimate.models.easyanimate.original_config",
                              "hf_easyanimate.models.legacy.original_config"),
    "hf_easyanimate.trainer": ("hf_easyanimate.trainers.lora_trainer", "hf_easyanimate.trainers.base"),
    "hf_easyanimate.callbacks": ("hf_easyanimate.training.validation",),
    "hf_easyanimate.hub": ("hf_easyanimate.training.hub",),
    "hf_easyanimate.report": ("hf_easyanimate.training.report",),
    "hf_easyanimate.compare": ("hf_easyanimate.inference.compare", "hf_easyanimate.commands.compare"),
    "hf_easyanimate.inpaint": ("hf_easyanimate.models.inpaint",),
    "hf_easyanimate.media": ("hf_easyanimate.utils.media", "hf_easyanimate.utils.atomic"),
    "hf_easyanimate.atomic": ("hf_easyanimate.utils.atomic",),
    "hf_easyanimate.quiet": ("hf_easyanimate.utils.quiet",),
    "hf_easyanimate.configs": ("hf_easyanimate.models.published",),
    "hf_easyanimate.training.secrets": ("hf_easyanimate.utils.secrets",),
    "hf_easyanimate.training.preflight": ("hf_easyanimate.assembly.preflight",),
    "hf_easyanimate.testing.legacy": ("hf_easyanimate.models.legacy.tiny",),
    "hf_easyanimate.models.lora_files": ("hf_easyanimate.models.lora.files", "hf_easyanimate.utils.atomic"),
    "hf_easyanimate.models.lora_format": ("hf_easyanimate.models.lora.format",),
    "hf_easyanimate.data.commands": ("hf_easyanimate.commands.validate_data", "hf_easyanimate.commands.buckets"),
    "hf_easyanimate.memory.command": ("hf_easyanimate.commands.plan_memory", "hf_easyanimate.memory.run_plan",
                                      "hf_easyanimate.data.plan"),
    "hf_easyanimate.cache.setup": ("hf_easyanimate.cache.build", "hf_easyanimate.commands.precompute"),
}
# Names of modules that still exist (entry points, slimmed modules) but no longer define them.
MOVED_NAMES: dict[str, tuple[str, ...]] = {
    "hf_easyanimate.train": ("hf_easyanimate.assembly", "hf_easyanimate.commands.common",
                             "hf_easyanimate.commands.train"),
    "hf_easyanimate.cli": ("hf_easyanimate.commands", "hf_easyanimate.commands.common", "hf_easyanimate.inference"),
    "hf_easyanimate.models.loading": ("hf_easyanimate.models.checkpoint", "hf_easyanimate.models.components",
                                      "hf_easyanimate.models.location", "hf_easyanimate.models.errors",
                                      "hf_easyanimate.models.original_config",
                                      "hf_easyanimate.models.easyanimate.loading"),
    "hf_easyanimate.models.vae": ("hf_easyanimate.models.legacy.vae",),
    "hf_easyanimate.testing": ("hf_easyanimate.models.tiny", "hf_easyanimate.models.easyanimate.tiny"),
    "hf_easyanimate.training.distributed": ("hf_easyanimate.config.launch",),
    "hf_easyanimate.memory.planner": (),
}
# Old names that exist under another name now ("module.name" -> "module:name").
RENAMED: dict[str, str] = {
    "hf_easyanimate.compare.compare_main": "hf_easyanimate.commands.compare:main",
    "hf_easyanimate.data.commands.validate_data_main": "hf_easyanimate.commands.validate_data:main",
    "hf_easyanimate.data.commands.buckets_main": "hf_easyanimate.commands.buckets:main",
    "hf_easyanimate.memory.command.plan_memory_main": "hf_easyanimate.commands.plan_memory:main",
    "hf_easyanimate.cache.setup.precompute_main": "hf_easyanimate.commands.precompute:main",
    "hf_easyanimate.cache.setup.PRECOMPUTE_DESCRIPTION": "hf_easyanimate.commands.precompute:DESCRIPTION",
    "hf_easyanimate.parser.TRAIN_DESCRIPTION": "hf_easyanimate.commands.train:DESCRIPTION",
    "hf_easyanimate.models.loading.V5_FAMILY_SUPPORT": "hf_easyanimate.models.errors:SUPPORTED",
    "hf_easyanimate.args.VAE_TEMPORAL_COMPRESSION": "hf_easyanimate.models.easyanimate.family:TEMPORAL_COMPRESSION",
}
# Old names with no one-to-one successor: what replaces them (the AttributeError says it).
REMOVED: dict[str, str] = {
    "hf_easyanimate.args.check_blocks_to_swap": "hf_easyanimate.assembly.preflight.check_against_checkpoint",
    "hf_easyanimate.train.check_prompt_lengths": "the checkpoint family's check_prompt_lengths",
    "hf_easyanimate.quiet.BENIGN_VAE_KEYS": "hf_easyanimate.utils.quiet.BENIGN_CONFIG_KEYS (each family registers "
                                            "its own)",
    "hf_easyanimate.memory.command.ENCODER_PARAMETERS": "the family's encoder_parameters",
    "hf_easyanimate.memory.command.RecipePlan": "hf_easyanimate.memory.run_plan.RunPlan",
    "hf_easyanimate.memory.command.largest_bucket": "hf_easyanimate.data.plan.largest_batch",
    "hf_easyanimate.memory.command.plan_recipe": "hf_easyanimate.memory.run_plan.plan_run",
    "hf_easyanimate.memory.command.shape_from_values": "hf_easyanimate.memory.run_plan.run_shape",
    "hf_easyanimate.memory.planner.LINEAR_DEPTH_CLASSES": "the family's uniform_blocks",
    "hf_easyanimate.memory.planner.transformer_block_count": "read_checkpoint(path).block_count",
    "hf_easyanimate.models.vae.local_frame_grid": "read_checkpoint(path).frame_grid",
    "hf_easyanimate.models.loading.LEGACY_OBJECTIVES": "read_checkpoint(path).loss_type()",
    "hf_easyanimate.models.loading.LEGACY_VERSIONS": "hf_easyanimate.models.family.families()",
    "hf_easyanimate.models.loading.check_legacy_training_setup": "read_checkpoint(path).check_training_setup(...)",
    "hf_easyanimate.models.loading.checkpoint_version": "read_checkpoint(path).version",
    "hf_easyanimate.models.loading.detect_version": "read_checkpoint(path).family",
    "hf_easyanimate.models.loading.ensure_supported_architecture": "hf_easyanimate.models.checkpoint.read_checkpoint",
    "hf_easyanimate.models.loading.load_legacy_components": "read_checkpoint(path).load(LoadOptions(...))",
    "hf_easyanimate.models.loading.read_model_index": "read_checkpoint(path).model_index",
    "hf_easyanimate.models.loading.read_transformer_config": "read_checkpoint(path).transformer_config",
}


def _caller_stacklevel() -> int:
    """The stack level (as ``warnings.warn`` counts it: importlib's own frames are skipped) of the first frame outside
    this module, the import machinery and a module's ``__getattr__``: the user's import line or attribute access."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        code = frame.f_code
        internal = code.co_filename.startswith("<frozen importlib")
        if not internal and code.co_filename != __file__ and code.co_name != "__getattr__":
            return level
        level += 0 if internal else 1
        frame = frame.f_back
    return level


def locate(old: str, targets: tuple[str, ...], attribute: str) -> tuple[str, object]:
    """(the module that holds it now, the value) of ``attribute`` of the old module ``old``: from the first of
    ``targets`` that has it, or under its new name; else an AttributeError that says what replaced it."""
    renamed = RENAMED.get(f"{old}.{attribute}")
    if renamed is not None:
        module, name = renamed.split(":")
        return f"{module}.{name}", getattr(importlib.import_module(module), name)
    for target in targets:
        module = importlib.import_module(target)
        if hasattr(module, attribute):
            return target, getattr(module, attribute)
    replaced = REMOVED.get(f"{old}.{attribute}")
    if replaced is not None:
        raise AttributeError(f"{old}.{attribute} was removed in hf_easyanimate 0.2; use {replaced}")
    raise AttributeError(f"module {old!r} has no attribute {attribute!r} (it moved to {', '.join(targets)})")


def warn_moved(what: str, where: str) -> None:
    warnings.warn(f"{what} is deprecated and will be removed in hf_easyanimate {REMOVED_IN}; import it from {where}",
                  DeprecationWarning, stacklevel=_caller_stacklevel())


class MovedModule(types.ModuleType):
    """Stands for a module of the old layout; every attribute comes from the new modules."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Deprecated alias of {', '.join(targets)}.")
        self.__targets = targets

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        _, value = locate(self.__name__, self.__targets, attribute)
        setattr(self, attribute, value)
        return value

    def __dir__(self) -> list[str]:
        names = set()
        for target in self.__targets:
            names.update(dir(importlib.import_module(target)))
        return sorted(names)


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED or importlib.machinery.PathFinder.find_spec(fullname, path) is not None:
            return None  # a real module of that name wins (tests/test_compat.py keeps the two sets apart)
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module) -> None:
        targets = MOVED[module.__name__]
        warn_moved(module.__name__, targets[0] if len(targets) == 1 else f"{', '.join(targets[:-1])} or {targets[-1]}")


def moved_name(module: str, attribute: str):
    """For an entry module's ``__getattr__``: a name that moved away from it, with the deprecation warning.

    Dunder names are never forwarded: the import system asks modules for ``__path__`` and the like, which must stay
    plain AttributeErrors (``from hf_easyanimate.cli import main`` would warn otherwise)."""
    if attribute.startswith("__"):
        raise AttributeError(f"module {module!r} has no attribute {attribute!r}")
    where, value = locate(module, MOVED_NAMES[module], attribute)
    warn_moved(f"{module}.{attribute}", where)
    return value


def install() -> None:
    """Put the old paths on the import path (idempotent; called by ``hf_easyanimate/__init__``)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
