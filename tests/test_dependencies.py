"""The dependency direction of the README's design map, checked on every import in the package (module-level
and function-local alike), read with ``ast`` so that nothing is imported.

    core        <- nothing of genlowdim
    errors      <- nothing of genlowdim (the error classes and exit codes)
    runtime, config, train (the engine)  <- each other and errors only
    structures  <- runtime, config
    metrics     <- structures, runtime, config
    families (crystal, lowrank, likelihood) <- core, structures, metrics, runtime, config, train, own family
    CLI modules (``cli.py``, ``*_cli.py``) may also import ``genlowdim.cli``; ``genlowdim.cli``, ``__main__`` and
    ``genlowdim.testing`` (tools over the families) import anything.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genlowdim"
BASE = {"genlowdim", "errors", "runtime", "config", "train"}  # "genlowdim": the package's own __init__ (version)
FAMILIES = {"crystal", "lowrank", "likelihood"}
ALLOWED = {
    "core": set(),
    "errors": set(), "runtime": BASE, "config": BASE, "train": BASE,
    "structures": BASE - {"train"},
    "metrics": (BASE - {"train"}) | {"structures"},
    **{family: BASE | {"core", "structures", "metrics"} for family in FAMILIES},
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
    return [(line, name) for line, name in found if name == "genlowdim" or name.startswith("genlowdim.")]


def _violations(path: Path) -> list[str]:
    module = _module_name(path)
    layer = _layer(module)
    if layer in TOOLS or module == "genlowdim":
        return []
    is_cli = path.stem == "cli" or path.stem.endswith("_cli")
    bad = []
    for line, target in _imports(path):
        used = _layer(target)
        if used == layer or used in ALLOWED.get(layer, set()) or (layer, used) in CROSS_FAMILY:
            continue
        if is_cli and target == "genlowdim.cli":
            continue
        bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({layer} may not use {used})")
    return bad


def test_every_layer_is_known():
    layers = {_layer(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert layers <= set(ALLOWED) | TOOLS | {"genlowdim"}, layers - set(ALLOWED) - TOOLS


def test_imports_follow_the_dependency_direction():
    bad = [v for path in sorted(PACKAGE.rglob("*.py")) for v in _violations(path)]
    assert not bad, "\n".join(bad)


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
