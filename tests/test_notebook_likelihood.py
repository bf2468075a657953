"""Execute notebooks/singular_likelihood.ipynb in quick mode (GENLOWDIM_QUICK=1)."""
from _notebooks import run_quick


def test_notebook_runs_in_quick_mode():
    text = run_quick("singular_likelihood.ipynb")
    assert "quick mode" in text and "diffusion" in text
