"""The shape of the house: imports between the project's modules run one way, lazy ones included.

Every ``import`` and ``from ... import`` in the packages and ``cli.py`` is read with ``ast``
(imports inside functions too: hiding a cycle in a function does not remove it), and the graph of
module -> module edges must have no cycle. The rooms' doors: ``cli.py`` is imported by nothing,
``cache/`` imports no other room, ``heads/`` imports neither ``embed/`` nor ``cache/``, and ``scoring/``
(scoring a file) imports nothing of ``comparison/`` (the experiments). ``fileio.py`` (atomic writes,
sha256) and ``errors.py`` (the one error base) import nothing of the project and every room may use them.
"""
from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGES = ("embed", "heads", "cache", "scoring", "comparison", "sharing", "serving")
GROUND = ("fileio", "errors")  # modules every room may import: they import none of them


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {project modules it imports}}`` for every module of the packages and cli.py."""
    files = [REPO / "cli.py"] + [REPO / f"{name}.py" for name in GROUND] + [
        p for pkg in PACKAGES for p in sorted((REPO / pkg).glob("*.py"))]
    names = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    root = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(root + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in names and t != module}
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycles_even_through_imports_inside_functions():
    graph = import_graph()
    assert {"embed.models", "embed.runs", "scoring.score", "scoring.ray_engine", "heads.base"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_rooms_keep_their_doors():
    graph = import_graph()

    def room(module: str) -> str:
        return module.split(".")[0]

    for module, edges in graph.items():
        assert "cli" not in edges, f"{module} imports cli.py"
        rooms = {room(e) for e in edges} - {room(module), *GROUND}
        if module in GROUND:
            assert not edges, f"{module}.py imports {edges}: it must import nothing of the project"
        if room(module) == "cache":
            assert not rooms, f"{module} imports {rooms}: cache/ knows keys and arrays only"
        if room(module) == "heads":
            assert not rooms & {"embed", "cache", "scoring"}, f"{module} imports {rooms}: heads see arrays only"
        if room(module) in ("scoring", "serving"):
            assert "comparison" not in rooms, f"{module} imports {rooms}: scoring a file needs no experiment code"
        if room(module) not in ("sharing", "cli"):
            assert "sharing" not in rooms, f"{module} imports {rooms}: only cli.py uses sharing/ (push, export)"


def _exception_classes() -> list[tuple[str, str, list[str]]]:
    """``(module, class, base names)`` for every class the project defines that looks like an exception."""
    found = []
    files = [REPO / "cli.py"] + [REPO / f"{name}.py" for name in GROUND] + [
        p for pkg in PACKAGES for p in sorted((REPO / pkg).glob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if node.name.endswith(("Error", "Exception")) or any(b.endswith(("Error", "Exception")) for b in bases):
                    found.append((_module_name(path), node.name, bases))
    return found


def test_every_public_error_derives_from_the_one_base():
    """One base at ground level (errors.TweetheadsError): the CLI catches one class, a script can too."""
    import errors
    from cache import CacheError
    from embed.errors import DataError, ModelError
    from heads import HeadError

    for cls in (CacheError, DataError, ModelError, HeadError):
        assert issubclass(cls, errors.TweetheadsError), cls
    classes = _exception_classes()
    assert len(classes) >= 6
    for module, name, bases in classes:
        if name.startswith("_") or name == "TweetheadsError":
            continue  # private control flow inside one module (never escapes it), and the base itself
        import importlib

        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, errors.TweetheadsError), f"{module}.{name} ({bases}) does not derive from TweetheadsError"


def test_bench_scripts_do_not_edit_sys_path():
    """The project is installed (editable) and ``python bench/NAME.py`` puts bench/ itself on sys.path."""
    import re

    scripts = sorted((REPO / "bench").glob("*.py")) + sorted((REPO / "bench" / "results").glob("*/commands.sh"))
    assert len(scripts) >= 15
    edits = [f"{p.relative_to(REPO)}:{n}" for p in scripts for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"sys\.path\.(insert|append)\(", line)]
    assert not edits, f"sys.path edited at {', '.join(edits)}: import through the editable install instead"


def test_bench_readme_names_every_bench_file():
    import re

    readme = (REPO / "bench" / "README.md").read_text()
    files = sorted(p.name for p in (REPO / "bench").iterdir() if p.suffix in (".py", ".sh"))
    assert len(files) >= 20
    missing = [name for name in files if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", readme)]
    assert not missing, f"bench/README.md does not name {', '.join(missing)}: add a line for each (what it measures, " \
                        "the command, where its results go)"


DOCUMENTED = ("embed", "cache", "serving", "sharing", "scoring", "heads", "comparison")  # every public def, class and method has a docstring


def undocumented(paths) -> list[str]:
    """``file:line name`` of each public top-level function or class, and each public method of a public class,
    without a docstring (names starting with ``_`` are private)."""
    found = []
    for path in paths:
        for node in ast.parse(path.read_text(), str(path)).body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            members = [(node.name, node)] + [
                (f"{node.name}.{sub.name}", sub) for sub in (node.body if isinstance(node, ast.ClassDef) else ())
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_")]
            found += [f"{path.relative_to(REPO)}:{n.lineno} {name}" for name, n in members if not ast.get_docstring(n)]
    return found


def test_every_public_function_class_and_method_has_a_docstring():
    paths = [p for pkg in DOCUMENTED for p in sorted((REPO / pkg).glob("*.py"))]
    assert len(paths) >= 30
    missing = undocumented(paths)
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
