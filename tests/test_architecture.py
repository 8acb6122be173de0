"""The house rules, checked on the source (docs/architecture.md states them; nothing here imports the package).

* rooms (the top-level packages) form layers; an import may only go down or sideways within a room;
* no import circle between modules;
* no module over 500 lines, no function over 60 outside the model ports;
* outside ``models/``, no EasyAnimate version literal and no model or pipeline class name in code: the rest of the
  package asks the loaded components or the model family.
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_easyanimate")

# Bottom to top. A module may import its own room and any room before it; "." is the package root (entry points
# and the deprecated aliases of old import paths), which may import anything.
LAYERS = ("utils", "objectives", "metrics", "data", "models", "testing", "memory", "cache", "config", "inference",
          "training", "trainers", "assembly", "commands", ".")
# Ports of the original V2-V4 classes keep the original's long constructors and forward passes, line for line.
MODEL_PORTS = ("models/legacy/hunyuan.py", "models/legacy/pixart.py", "models/legacy/vae.py")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 60
VERSION_LITERAL = re.compile(r"^v[1-9](\.\d)?$")
# The component and pipeline classes of the EasyAnimate releases; only models/ names them.
MODEL_CLASSES = {
    "EasyAnimateTransformer3DModel", "AutoencoderKLMagvit", "HunyuanTransformer3DModel", "Transformer3DModel",
    "LegacyMagvitVAE", "Qwen2VLForConditionalGeneration", "Qwen2Tokenizer", "BertModel", "BertTokenizer",
    "T5EncoderModel", "T5Tokenizer", "CLIPVisionModelWithProjection", "EasyAnimatePipeline",
    "EasyAnimateInpaintPipeline", "EasyAnimateControlPipeline",
}


def _modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                module = "hf_easyanimate" + ("" if relative == "__init__" else "." + relative.removesuffix(".__init__"))
                found[module] = path
    return found


MODULES = _modules()


def _room(module: str) -> str:
    parts = module.split(".")
    path = MODULES[module]
    if len(parts) == 1 or (len(parts) == 2 and not path.endswith("__init__.py")):
        return "."
    return parts[1]


def _imports(module: str) -> set[str]:
    """Package modules that ``module`` imports, at any depth of its code (lazy imports count)."""
    path = MODULES[module]
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES and name != module and not module.startswith(name + ".")}


EDGES = {module: _imports(module) for module in MODULES}


def test_imports_only_run_down_the_layers():
    upward = sorted(
        f"{source} -> {target}" for source, targets in EDGES.items() for target in targets
        if LAYERS.index(_room(target)) > LAYERS.index(_room(source))
    )
    assert upward == [], "imports from a lower room to a higher one:\n" + "\n".join(upward)


def test_every_room_has_a_layer():
    assert {_room(module) for module in MODULES} <= set(LAYERS)


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in EDGES[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            # a package's __init__ re-exporting its own modules is not a circle: every member is an __init__ or a
            # parent package of another member
            if len(component) > 1 and not all(
                    MODULES[member].endswith("__init__.py") or any(other.startswith(member + ".") for other in component)
                    for member in component):
                circles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert circles == []


def _relative(path: str) -> str:
    return os.path.relpath(path, PACKAGE).replace(os.sep, "/")


def test_no_module_is_too_long():
    long = {_relative(path): n for path in MODULES.values()
            if (n := open(path, encoding="utf-8").read().count("\n")) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_too_long_outside_the_model_ports():
    long = []
    for path in MODULES.values():
        if _relative(path) in MODEL_PORTS:
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{_relative(path)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _model_specific_code(path: str) -> list[str]:
    """Version literals and EasyAnimate class names in ``path``'s code (docstrings and comments are prose)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = set(re.findall(r"\w+", node.value))
            if VERSION_LITERAL.match(node.value) or words & MODEL_CLASSES:
                found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Name) and node.id in MODEL_CLASSES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in MODEL_CLASSES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in MODEL_CLASSES:
            found.append(f"{node.lineno}: import {node.name}")
    return found


def test_only_models_knows_versions_and_classes():
    offenders = defaultdict(list)
    for module, path in MODULES.items():
        if _room(module) == "models" or module == "hf_easyanimate":  # the public API re-exports the ports
            continue
        for hit in _model_specific_code(path):
            offenders[_relative(path)].append(hit)
    assert dict(offenders) == {}


@pytest.mark.parametrize("room", [room for room in LAYERS if room != "."])
def test_each_room_is_a_package_with_a_docstring(room):
    init = os.path.join(PACKAGE, room, "__init__.py")
    assert os.path.isfile(init), f"hf_easyanimate/{room}/ is not a package"
    assert ast.get_docstring(ast.parse(open(init, encoding="utf-8").read())), f"{room}/__init__.py says nothing"


def test_commands_only_parse_and_call_and_never_import_each_other():
    commands = {module for module in MODULES if _room(module) == "commands" and not module.endswith((".common",
                                                                                                    ".commands"))}
    crossed = sorted(f"{source} -> {target}" for source in commands for target in EDGES[source] if target in commands)
    assert crossed == []
