"""The shape of the code base: layers import downwards only, no import cycles, modules of a readable size.

Read from the source with ``ast`` (imports inside functions count too), so these hold for every
module whether or not a test happens to import it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engines", "pipelines", "serve")
#: A module longer than this says in its docstring why it is one module ("one module" / "one cohesive").
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "proto" in path.parts:
                continue  # generated
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name and t.split(".")[0] in PACKAGES:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_package_init(importer: str, imported: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules is not a cycle with them."""
    return MODULES[imported].name == "__init__.py" and importer.startswith(imported + ".")


def test_no_import_cycles() -> None:
    graph = {m: {d for d in deps if not _is_package_init(m, d)} for m, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


#: What each layer may import (besides itself and the standard library / third-party packages).
LAYERS = {
    "engines": set(),
    "pipelines": {"engines"},
    "serve": {"engines", "pipelines"},
}
#: Packages of pipelines/ the runtime path uses; they must not need training code, developer tools or the CLI.
RUNTIME = ("pipelines.media", "pipelines.analysis", "pipelines.offline", "pipelines.live", "pipelines.library")
NOT_FROM_RUNTIME = ("pipelines.training", "pipelines.devtools", "pipelines.cli")


def test_layers_import_downwards_only() -> None:
    bad = []
    for mod, deps in GRAPH.items():
        top = mod.split(".")[0]
        for d in deps:
            dtop = d.split(".")[0]
            if dtop != top and dtop not in LAYERS[top]:
                bad.append(f"{mod} -> {d}")
            if mod.startswith(RUNTIME) and d.startswith(NOT_FROM_RUNTIME):
                bad.append(f"{mod} -> {d} (runtime code importing training/devtools/cli)")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_a_readable_size_or_says_why_not(name: str) -> None:
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    n = text.count("\n")
    if n <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "one module" in doc.lower() or "one cohesive" in doc.lower(), (
        f"{path.relative_to(ROOT)} has {n} lines: split it, or say in its docstring why it is one module")


def test_every_package_says_what_it_holds() -> None:
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name != "serve.proto":
            assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path} has no docstring"


def test_package_count_is_what_the_readme_maps() -> None:
    """Every package of pipelines/ and serve/ is in the README's architecture section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    packages = defaultdict(list)
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name.count(".") == 1 and not name.startswith("engines"):
            packages[name.split(".")[0]].append(name)
    tree = readme[readme.index("### Where things live"):]
    missing = [n for pkgs in packages.values() for n in pkgs
               if f"\n  {n.split('.')[1]}/ " not in tree and n != "serve.proto"]
    assert not missing, f"README's architecture section does not mention: {missing}"
