"""The notebooks are committed with their outputs, so that a reader on the web sees the figures, and those
outputs belong to the current code: the hash of the code cells stored with them matches, every code cell
ran in order without an error and showed something. Nothing is executed here; the test_notebook_* tests
execute each notebook and compare the fresh run with the stored one."""
import nbformat
import pytest
from _notebooks import NOTEBOOKS, STORED_MODE, code_sha256, stored_run

FIGURES = {"crystal_subspaces.ipynb": 7, "singular_likelihood.ipynb": 5, "subspace_clustering.ipynb": 4}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_stored_outputs_belong_to_the_code(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    stored = nb.metadata.get("genlowdim", {})
    assert stored.get("code_sha256") == code_sha256(nb), (
        f"{name}: the code changed since its outputs were stored; run `make notebooks`")
    assert stored.get("outputs") == STORED_MODE
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code), [i for i, c in enumerate(nb.cells) if c in code and not c.outputs]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert stored_run(name).images == FIGURES[name]
