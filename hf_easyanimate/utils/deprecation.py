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
    "hf_easyanimate.args": ("hf_easyanimate.config", "hf_easyanimate.config.rules"),
    "hf_easyanimate.parser": ("hf_easyanimate.config.parser", "hf_easyanimate.config.cli_help"),
    "hf_easyanimate.flagdocs": ("hf_easyanimate.config.flagdocs",),
    "hf_easyanimate.legacy": ("hf_easyanimate.config.dialect", "hf_easyanimate.models.original_config"),
    "hf_easyanimate.trainer": ("hf_easyanimate.trainers.lora_trainer", "hf_easyanimate.trainers.base"),
    "hf_easyanimate.callbacks": ("hf_easyanimate.training.validation",),
    "hf_easyanimate.hub": ("hf_easyanimate.training.hub",),
    "hf_easyanimate.report": ("hf_easyanimate.training.report",),
    "hf_easyanimate.compare": ("hf_easyanimate.inference.compare", "hf_easyanimate.commands.compare"),
    "hf_easyanimate.inference": ("hf_easyanimate.inference",),
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
    "hf_easyanimate.memory.command": ("hf_easyanimate.commands.plan_memory", "hf_easyanimate.memory.run_plan"),
    "hf_easyanimate.cache.setup": ("hf_easyanimate.cache.build", "hf_easyanimate.commands.precompute"),
}
# Names of the 0.1 entry modules (train.py, cli.py: still real modules) that moved elsewhere.
MOVED_NAMES: dict[str, tuple[str, ...]] = {
    "hf_easyanimate.train": ("hf_easyanimate.assembly", "hf_easyanimate.assembly.objective",
                             "hf_easyanimate.assembly.components", "hf_easyanimate.assembly.data",
                             "hf_easyanimate.assembly.validation", "hf_easyanimate.assembly.run"),
    "hf_easyanimate.cli": ("hf_easyanimate.commands", "hf_easyanimate.commands.common",
                           "hf_easyanimate.inference.pipelines"),
}


def _caller_stacklevel() -> int:
    """The stack level of the first frame outside the import machinery and this module: the user's import line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        frame, level = frame.f_back, level + 1
    return level


def forward(old: str, targets: tuple[str, ...], attribute: str):
    """``attribute`` from the first of ``targets`` that has it (AttributeError naming the old module if none)."""
    for target in targets:
        module = importlib.import_module(target)
        if hasattr(module, attribute):
            return getattr(module, attribute)
    raise AttributeError(f"module {old!r} has no attribute {attribute!r} (it moved to {', '.join(targets)})")


def warn_moved(old: str, name: str | None, targets: tuple[str, ...]) -> None:
    what = f"{old}.{name}" if name else old
    warnings.warn(f"{what} is deprecated and will be removed in hf_easyanimate {REMOVED_IN}; import it from "
                  f"{' or '.join(targets)}", DeprecationWarning, stacklevel=_caller_stacklevel())


class MovedModule(types.ModuleType):
    """Stands for a module of the old layout; every attribute comes from the new modules."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Deprecated alias of {', '.join(targets)}.")
        self.__targets = targets

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        value = forward(self.__name__, self.__targets, attribute)
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
        warn_moved(module.__name__, None, MOVED[module.__name__])


def moved_name(module: str, attribute: str):
    """For an entry module's ``__getattr__``: a name that moved away from it, with the deprecation warning."""
    targets = MOVED_NAMES[module]
    value = forward(module, targets, attribute)
    warn_moved(module, attribute, targets)
    return value


def install() -> None:
    """Put the old paths on the import path (idempotent; called by ``hf_easyanimate/__init__``)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
