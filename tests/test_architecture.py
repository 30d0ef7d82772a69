"""The shape of the package, checked statically (no imports, no torch): no import circle, and
only `dinctl/cli/` writes to the console (the library reports through dinctl/reporting.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.notorch

PACKAGE = Path(__file__).resolve().parent.parent / "dinctl"


def module_name(path: Path, root: Path) -> str:
    """`dinctl.data.fields` for dinctl/data/fields.py, `dinctl.data` for its __init__.py."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, is_package: bool, tree: ast.Module) -> set[str]:
    """Every module `tree` imports, at module level, inside a function or under `if
    TYPE_CHECKING:` (a circle of annotations is still a circle of modules), as dotted names: for
    `from a import b` both `a` and `a.b` (whichever is a module is kept by the caller)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join([*parts[:keep], *([node.module] if node.module else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module → the package's modules it imports (edges to itself dropped)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deps = imported_modules(name, path.name == "__init__.py", tree)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_circle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_imports_inside_functions_and_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "one.py").write_text("from pkg.sub import two\n")
    (pkg / "sub" / "two.py").write_text("def f():\n    from ..one import x\n")
    (pkg / "sub" / "three.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import one\n"
    )
    graph = import_graph(pkg)
    assert graph["pkg.one"] == {"pkg.sub", "pkg.sub.two"}
    assert graph["pkg.sub.two"] == {"pkg.one"}
    assert graph["pkg.sub.three"] == {"pkg", "pkg.one"}  # type-checking imports count too
    assert cycles(graph) == [["pkg.one", "pkg.sub.two"]]


def test_dinctl_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 50 and "dinctl.data.builder" in graph["dinctl.data.preprocess"]
    assert cycles(graph) == []


CONSOLE_CALLS = ("print", "Console", "sys.stderr", "sys.stdout", "sys.__stderr__")


def console_writes(path: Path) -> list[str]:
    """`file:line name` of every print call, rich Console and sys.stdout/stderr use in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id if node.func.id in ("print", "Console") else None
        elif isinstance(node, ast.Attribute) and ast.unparse(node) in CONSOLE_CALLS:
            name = ast.unparse(node)
        elif isinstance(node, ast.ImportFrom) and node.module == "rich.console":
            name = "rich.console"
        if name is not None:
            hits.append((node.lineno, name))
    return [f"{path.name}:{line} {name}" for line, name in sorted(hits)]


def test_console_writes_are_found(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import sys\nfrom rich.console import Console\n"
        "def f():\n    print('x')\n    sys.stderr.write('y')\n    Console(stderr=True)\n"
    )
    assert console_writes(src) == [
        "m.py:2 rich.console",
        "m.py:4 print",
        "m.py:5 sys.stderr",
        "m.py:6 Console",
    ]


def test_only_the_cli_writes_to_the_console():
    library = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    assert len(library) > 50
    hits = [hit for path in library for hit in console_writes(path)]
    assert hits == []


def test_every_model_has_its_table_label():
    from dinctl import choices

    assert set(choices.MODEL_LABELS) == set(choices.MODELS)  # one list: choices.Model
