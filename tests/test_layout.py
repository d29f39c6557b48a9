"""The code's shape: imports go one way without circles, and the architecture map names every module."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "harness", "training")
LAYER = {"zoo": 0, "harness": 1, "training": 2}
MAP = ROOT / "docs" / "development.md"


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the three packages (the autoattack adapter is installed apart)."""
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            if "autoattack_compat" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_imports_go_zoo_harness_training_one_way():
    """Breaks when zoo imports harness (or harness training), even inside a function."""
    wrong = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
             if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]
    assert wrong == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among modules (a package's __init__ importing its own submodules does not count)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep.startswith(node + "."):      # a package re-exporting its submodules
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle():
    """Breaks on any circle, e.g. evaluation importing repeats while repeats imports evaluation in a function."""
    graph = _graph()
    graph = {a: {b for b in deps if not a.startswith(b + ".")} for a, deps in graph.items()}  # a parent package
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _map_paths() -> set[str]:
    """The paths the architecture map in docs/development.md names (built from its indentation)."""
    text = MAP.read_text(encoding="utf-8")
    block = text.split("## Architecture", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    paths, stack = set(), []
    for line in block.splitlines():
        if not line.strip() or line.startswith(" " * 26):      # a continued description
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r",\s*", line.strip().split("  ")[0])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prefix = stack[-1][1] if stack else ""
        for name in names:
            paths.add(prefix + name)
        if names[-1].endswith("/"):
            stack.append((indent, prefix + names[-1]))
    return paths


def test_every_module_is_on_the_architecture_map_and_every_name_exists():
    """Breaks when a module is added, moved or removed without the map."""
    named = _map_paths()
    files = [p.relative_to(ROOT) for p in _modules().values()]
    missing = sorted(str(p) for p in files if p.name != "__init__.py" and str(p) not in named)
    missing += sorted({f"{p.parent}/" for p in files if p.name == "__init__.py"} - named)
    assert missing == [], f"not on the map in {MAP.name}: {missing}"
    stale = sorted(p for p in named if "*" not in p and not (ROOT / p).exists())
    assert stale == [], f"on the map but not in the tree: {stale}"
