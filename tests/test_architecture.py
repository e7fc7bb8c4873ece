"""The layout keeps itself: every import points down a floor, and no modules import in a circle.

The floors (docs/architecture.md):

    api/        HTTP only               -> gunmatch, training, screening, synth, index, matcher
    gunmatch/   application: services   -> training, screening, synth, index, matcher
                (its CLI commands also import api, to serve it)
    training/   every trainer           -> screening, synth, index, matcher
    screening/  X-ray parcel screening  -> synth, index, matcher
    synth/      the generator           -> matcher (at most)
    index/      vectors + metadata      -> nothing of ours
    matcher/    image -> vector         -> nothing of ours

benchmarks/ may import any package; nothing but benchmarks/ and tests/ imports benchmarks/ or
tests/. Imports are read with ``ast`` from the source, so a function-local import counts too.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("matcher", "index", "synth", "screening", "training", "gunmatch", "api", "benchmarks")
ALLOWED: dict[str, set[str]] = {
    "matcher": set(),
    "index": set(),
    "synth": {"matcher"},
    "screening": {"synth", "index", "matcher"},
    "training": {"screening", "synth", "index", "matcher"},
    "gunmatch": {"training", "screening", "synth", "index", "matcher"},
    "api": {"gunmatch", "training", "screening", "synth", "index", "matcher"},
    "benchmarks": {"api", "gunmatch", "training", "screening", "synth", "index", "matcher"},
}
# The one sanctioned upward edge: `gunmatch serve` starts the HTTP service.
UPWARD_EXCEPTIONS = {("gunmatch.commands.serve", "api")}


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a source file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> Iterator[str]:
    """Absolute names of the modules a source file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            # ``from pkg import mod`` imports the submodule when there is one.
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def project_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> project modules it imports, for every source file of ``packages``."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        graph[mod] = {name for name in imports_of(path, mod) if name in files and name != mod}
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that break the floors."""
    bad = []
    for mod, targets in graph.items():
        floor = mod.split(".")[0]
        for target in targets:
            dest = target.split(".")[0]
            if dest == floor or dest in ALLOWED.get(floor, set()):
                continue
            if any(mod == m and dest == d for m, d in UPWARD_EXCEPTIONS):
                continue
            bad.append(f"{mod} imports {target}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _parents_as_modules(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges to a package's own ``__init__`` from inside it (re-exports, not cycles)."""
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return project_graph(ROOT, PACKAGES)


def test_every_import_points_down(graph):
    assert violations(graph) == []


def test_no_import_cycles(graph):
    assert cycles(_parents_as_modules(graph)) == []


def test_nothing_imports_tests():
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            mod = module_name(path, ROOT)
            assert not [n for n in imports_of(path, mod) if n.split(".")[0] == "tests"], mod


def test_test_modules_import_no_other_test_module():
    """Shared fixtures live in conftest.py, shared helpers in helpers.py."""
    for path in (ROOT / "tests").rglob("test_*.py"):
        mod = module_name(path, ROOT)
        names = {n.split(".")[-1] for n in imports_of(path, mod) if n.startswith("tests.")}
        assert not {n for n in names if n.startswith(("test_", "conftest"))}, mod


def test_the_check_catches_an_upward_import_and_a_cycle(tmp_path):
    """The rules fail when broken: index importing gunmatch, and two modules in a circle."""
    (tmp_path / "index").mkdir()
    (tmp_path / "gunmatch").mkdir()
    (tmp_path / "index" / "__init__.py").write_text("")
    (tmp_path / "index" / "gallery.py").write_text("from gunmatch.service import Engine\n")
    (tmp_path / "gunmatch" / "__init__.py").write_text("")
    (tmp_path / "gunmatch" / "service.py").write_text("from gunmatch import search\n")
    (tmp_path / "gunmatch" / "search.py").write_text("import gunmatch.service\n")
    g = project_graph(tmp_path, ("index", "gunmatch"))
    assert violations(g) == ["index.gallery imports gunmatch.service"]
    assert cycles(_parents_as_modules(g)) == [["gunmatch.search", "gunmatch.service"]]


def test_gunmatch_holds_under_a_quarter_of_the_code():
    def lines(pkg: str) -> int:
        return sum(len(p.read_text().splitlines()) for p in (ROOT / pkg).rglob("*.py"))

    total = sum(lines(pkg) for pkg in PACKAGES)
    assert lines("gunmatch") / total < 0.25


# Tracked files stay small: code and docs under 256 KB each; the vendored Swagger UI bundle
# (offline API docs) is the one exception; shipped models (models/<name>/, float16, what
# differs from the bundled trunk) may hold up to 8 MB a file and 24 MB in all.
FILE_LIMIT = 256 * 1024
MODEL_FILE_LIMIT = 8 * 1024 * 1024
MODELS_LIMIT = 24 * 1024 * 1024
VENDORED = {"api/static/swagger/swagger-ui-bundle.js"}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if out.returncode != 0:
        pytest.skip("not a git checkout: the size check reads the tracked files")
    return [Path(p) for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


def test_tracked_files_are_small_and_models_fit_their_budget():
    files = tracked_files()
    too_big, models_total = [], 0
    for rel in files:
        size = (ROOT / rel).stat().st_size
        if rel.parts[0] == "models":
            models_total += size
            if size > MODEL_FILE_LIMIT:
                too_big.append((str(rel), size))
        elif size > FILE_LIMIT and str(rel) not in VENDORED:
            too_big.append((str(rel), size))
    assert too_big == []
    assert models_total <= MODELS_LIMIT
