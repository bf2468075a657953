"""The dependency direction of the README's design map, checked on every import in the package (module-level
and function-local alike), read with ``ast`` so that nothing is imported.

    core        <- nothing of genlowdim
    errors      <- nothing of genlowdim (the error classes and exit codes)
    runtime, config, train (the engine, with train_settings, train_state, train_logs, distributed), resume
                <- each other and errors only
    structures  <- runtime, config
    physics     <- structures, runtime, config
    metrics     <- structures, physics, runtime, config
    families (crystal, lowrank, likelihood) <- core, structures, physics, metrics, runtime, config, train, own
                                               family
    ``genlowdim.cli``, ``__main__`` and ``genlowdim.testing`` (tools over the families) import anything.

Inside ``crystal`` the shared layer stands under the model families and the tasks over them:

    crystal.{geometry, data, decoded, contract, runs, latents, pretrained, viz}  <- each other only
    crystal.cdvae     (a model family)  <- the shared layer
    crystal.tasks     <- the shared layer and the families
    crystal.analysis  <- the shared layer and the families
    crystal.{cli, commands, data_cli, families}  <- anything of crystal

Modules loaded by ``importlib`` from a string (``"genlowdim.crystal.cli"``) count as imports, and the whole
module graph, function-local imports included, has no cycle.
"""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genlowdim"
# "genlowdim": the package's own __init__ (version)
ENGINE = {"train", "train_settings", "train_state", "train_logs", "distributed", "resume"}
BASE = {"genlowdim", "errors", "runtime", "config"} | ENGINE
FAMILIES = {"crystal", "lowrank", "likelihood"}
ALLOWED = {
    "core": set(),
    "errors": set(), "runtime": BASE, "config": BASE, **{part: BASE for part in ENGINE},
    "structures": BASE - ENGINE,
    "physics": (BASE - ENGINE) | {"structures"},
    "metrics": (BASE - ENGINE) | {"structures", "physics"},
    **{family: BASE | {"core", "structures", "physics", "metrics"} for family in FAMILIES},
}
# one family builds on another, said here so that it stays a decision: the likelihood experiments use the
# mixture of low-rank Gaussians as one of their toy distributions
CROSS_FAMILY = {("likelihood", "lowrank")}
TOOLS = {"cli", "__main__", "testing"}


def _layer(module: str) -> str:
    """'genlowdim.crystal.cdvae.model' -> 'crystal'; 'genlowdim' -> 'genlowdim'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported genlowdim module) for every import statement in the file, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "genlowdim":   # "from genlowdim import crystal" names the modules it imports
                found += [(node.lineno, f"genlowdim.{a.name}" if _is_submodule(a.name) else target)
                          for a in node.names]
            else:
                found.append((node.lineno, target))
    if "import_module" in path.read_text():   # modules named by a string and loaded with importlib
        found += [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and MODULE_STRING.fullmatch(node.value) and _resolve(node.value) is not None]
    return [(line, name) for line, name in found if name == "genlowdim" or name.startswith("genlowdim.")]


MODULE_STRING = re.compile(r"genlowdim(\.[a-z_]+)+")


def _resolve(module: str) -> str | None:
    """The module a dotted name refers to: itself when it is a file or package, else its parent (a name
    imported from a module); None outside the package."""
    while module.startswith("genlowdim"):
        rel = Path(*module.split("."))
        if (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file():
            return module
        module = module.rpartition(".")[0]
    return None


def _violations(path: Path) -> list[str]:
    module = _module_name(path)
    layer = _layer(module)
    if layer in TOOLS or module == "genlowdim":
        return []
    bad = []
    for line, target in _imports(path):
        used = _layer(target)
        if used == layer or used in ALLOWED.get(layer, set()) or (layer, used) in CROSS_FAMILY:
            continue
        bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({layer} may not use {used})")
    return bad


def test_every_layer_is_known():
    layers = {_layer(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert layers <= set(ALLOWED) | TOOLS | {"genlowdim"}, layers - set(ALLOWED) - TOOLS


def test_imports_follow_the_dependency_direction():
    bad = [v for path in sorted(PACKAGE.rglob("*.py")) for v in _violations(path)]
    assert not bad, "\n".join(bad)


CRYSTAL_BASE = {"geometry", "data", "decoded", "contract", "runs", "latents", "pretrained", "viz"}
CRYSTAL_FAMILIES = {"cdvae"}
CRYSTAL_ALLOWED = {
    **{part: CRYSTAL_BASE for part in CRYSTAL_BASE},
    **{family: CRYSTAL_BASE | {family} for family in CRYSTAL_FAMILIES},
    "tasks": CRYSTAL_BASE | CRYSTAL_FAMILIES | {"tasks"},
    "analysis": CRYSTAL_BASE | CRYSTAL_FAMILIES | {"analysis"},
}


def _crystal_part(module: str) -> str | None:
    """'genlowdim.crystal.cdvae.model' -> 'cdvae'; None outside crystal or for crystal's own __init__."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "crystal" else None


def test_the_crystal_layer_stands_under_its_families_and_tasks():
    bad = []
    for path in sorted((PACKAGE / "crystal").rglob("*.py")):
        part = _crystal_part(_module_name(path))
        for line, target in _imports(path):
            used = _crystal_part(target)
            if part in CRYSTAL_ALLOWED and used is not None and used not in CRYSTAL_ALLOWED[part]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                           f"(crystal.{part} may not use crystal.{used})")
    assert not bad, "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (any depth, importlib strings included)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        targets = {_resolve(t) for _, t in _imports(path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules in order) or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_graph_has_no_cycle():
    # a package's __init__ that only describes it imports nothing; one that hands names on is an edge too
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("source, layer, expected", [
    ("from genlowdim.crystal.cdvae.model import CDVAE\n", "metrics", 1),
    ("def f():\n    import genlowdim.crystal.data\n", "structures", 1),
    ("from ..crystal import model\n", "metrics", 1),
    ("from genlowdim.structures.io import read_structures\n", "metrics", 0),
    ("from genlowdim.metrics.result import versions\n", "core", 1),
])
def test_the_checker_sees_local_and_relative_imports(tmp_path, monkeypatch, source, layer, expected):
    """The checker itself: function-local and relative imports count."""
    root = tmp_path / "genlowdim"
    (root / layer).mkdir(parents=True)
    path = root / layer / "probe.py"
    path.write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", root)
    assert len(_violations(path)) == expected
