"""The package's shape: layers import only downwards, no module imports itself back through
others, and every plug-in kind is one registry whose names agree with the configs."""

from __future__ import annotations

import ast
from pathlib import Path

import anybind

ROOT = Path(anybind.__file__).parent
TOP = {"anybind", "anybind.__main__", "anybind.api"}  # the Python API sits beside the CLI


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module → the anybind modules it imports at run time, at the top or inside functions
    (imports for type checkers only are left out: they never run)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == "anybind":
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        deps.add(full if full in MODULES else _resolve(node.module))
            elif isinstance(node, ast.Import):
                deps |= {_resolve(a.name) for a in node.names if a.name.startswith("anybind.")}
        graph[module] = deps - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    """0: the library, 1: recipes (loops and jobs over it), 2: the CLI and the Python API."""
    if module in TOP or module.startswith("anybind.cli"):
        return 2
    return 1 if module.startswith("anybind.recipes") else 0


def test_the_import_graph_is_found():
    graph = import_graph()
    # the checker itself must see real edges, or the tests below would pass on nothing
    assert "anybind.recipes.train" in graph["anybind.cli.train"]
    assert "anybind.modalities.speech_model" in graph["anybind.modalities.audio"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back():
    assert _cycles(import_graph()) == []


def test_layers_import_only_downwards():
    upward = [
        f"{module} → {dep}"
        for module, deps in import_graph().items()
        for dep in deps
        if layer(dep) > layer(module)
    ]
    assert upward == []


def test_every_plugin_kind_is_one_registry_whose_names_match():
    from anybind.adapt import METHODS
    from anybind.config.schema import SECTION_TYPES
    from anybind.data.named import NAMED_SOURCES
    from anybind.encoders import ENCODERS
    from anybind.modalities import MODALITIES
    from anybind.objectives import OBJECTIVES
    from anybind.tuners import TUNERS

    for name, cls in ENCODERS.items():
        assert cls.Options.model_fields["type"].default == name
    for registry in (MODALITIES, METHODS, TUNERS):
        assert all(cls.name == name for name, cls in registry.items())
    objective_types = {t for t, kind in SECTION_TYPES.items() if kind == "objective"}
    assert set(OBJECTIVES) == objective_types == {"infonce", "siglip", "cwcl", "symile"}
    assert set(METHODS) >= {"linear-probe", "tent", "self-train", "lora"}
    assert set(NAMED_SOURCES) == {"mnist", "fsdd", "pendigits", "avdigits"}


def test_training_without_a_hugging_face_tower_does_not_import_transformers():
    """transformers and scipy.signal cost about 3 s of every command's start-up (6.4 s → 2.7 s
    for `anybind train`): they are imported where a Hugging Face tower or a resampler is built."""
    import subprocess
    import sys

    code = (
        "import sys, anybind.recipes.train, anybind.recipes.evaluate, anybind.cli.main; "
        "print(sorted(m for m in ('transformers', 'scipy.signal') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
