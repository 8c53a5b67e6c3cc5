"""The code's shape, read statically with `ast`: no import circle between any two modules of `dlkit` and
`dlkit_runtime` (imports inside functions included), `dlkit.core` free of stages and TensorFlow, no module over 350
lines, no function over 80, and the device names in one module (the catalogue)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dlkit": ROOT / "toolkit" / "dlkit", "dlkit_runtime": ROOT / "runtime" / "dlkit_runtime"}
STAGES = ("exporting", "quantization", "verification", "bundling", "device", "running", "demonstration", "commands",
          "cli", "testing")
HEAVY = ("tensorflow", "keras", "tf2onnx")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 80


def _modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` file of the packages (a package is its `__init__.py`)."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under `if TYPE_CHECKING:`: never executed, so no circle."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for body in node.body for n in ast.walk(body)}
    return skipped


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The modules of `modules` that `module` imports, anywhere in its file, with the line of the first import.
    `from a.b import c` names the module `a.b.c` when there is one, else `a.b` (the names come from its
    `__init__` or module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped, found = _type_checking_only(tree), {}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for name in names:
            if name in modules and name != module:
                found.setdefault(name, node.lineno)
    return found


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None (depth-first search, colours)."""
    colour, stack = {}, []

    def visit(node: str) -> list[str] | None:
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = "black"
        return None

    for start in sorted(graph):
        if start not in colour and (cycle := visit(start)):
            return cycle
    return None


def _graph(packages: dict[str, Path]) -> dict[str, dict[str, int]]:
    modules = _modules(packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_no_import_circle():
    cycle = find_cycle(_graph(PACKAGES))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_check_sees_a_circle(tmp_path):
    """A circle added to a package (here a copy of the shape: two modules, one importing lazily) is found."""
    package = tmp_path / "pkg"
    (package / "stage").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage" / "__init__.py").write_text("from pkg.stage.a import run\n")
    (package / "stage" / "a.py").write_text("from pkg.stage import b\n\ndef run():\n    return b.go()\n")
    (package / "stage" / "b.py").write_text("def go():\n    from pkg.stage.a import run\n    return run\n")
    assert find_cycle(_graph({"pkg": package})) == ["pkg.stage.a", "pkg.stage.b", "pkg.stage.a"]
    (package / "stage" / "b.py").write_text("def go():\n    return 1\n")
    assert find_cycle(_graph({"pkg": package})) is None


def test_core_imports_no_stage_and_no_tensorflow():
    modules = _modules(PACKAGES)
    stages = tuple(f"dlkit.{s}" for s in STAGES)
    bad = []
    for name, path in modules.items():
        if not name.startswith("dlkit.core"):
            continue
        bad += [f"{name} imports {dep}" for dep in imports_of(name, path, modules) if dep.startswith(stages)]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            roots = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{name}:{node.lineno} imports {r}" for r in roots if r.split(".")[0] in HEAVY]
    assert not bad, "; ".join(bad)


def test_runtime_never_imports_the_toolkit():
    modules = _modules(PACKAGES)
    bad = [f"{name} imports {dep}" for name, path in modules.items() if name.startswith("dlkit_runtime")
           for dep in imports_of(name, path, modules) if dep.split(".")[0] == "dlkit"]
    assert not bad, "; ".join(bad)


def test_modules_and_functions_are_short():
    long = []
    for path in _modules(PACKAGES).values():
        source = path.read_text()
        lines = len(source.splitlines())
        where = path.relative_to(ROOT)
        if lines > MAX_MODULE_LINES:
            long.append(f"{where}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{where}:{node.lineno} {node.name}() is {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not long, "; ".join(long)


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are neither docstrings nor a click option's help text."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skipped |= {id(n) for n in ast.walk(node.value)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skipped]


@pytest.mark.parametrize("name", ["rpi4", "cortex-a72", "x86-avx2"])
def test_device_facts_live_in_the_catalogue(name):
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    holders = sorted({str(path.relative_to(ROOT)) for module, path in _modules(PACKAGES).items()
                      if module.startswith("dlkit.") and any(pattern.search(s) for _, s in _code_strings(path))})
    assert holders == ["toolkit/dlkit/core/catalogue.py"], holders
