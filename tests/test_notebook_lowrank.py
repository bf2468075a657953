"""Execute notebooks/subspace_clustering.ipynb end to end in its quick mode (GENLOWDIM_QUICK=1)."""
import re

from _notebooks import assert_agrees_with_stored, run_quick


def test_notebook_recovers_subspaces_and_shows_its_figures():
    run = run_quick("subspace_clustering.ipynb", timeout=300)
    assert "quick mode: True" in run.text
    assert run.images == 4   # samplers, recovered subspaces, phase transition, digits Jacobian rank
    # the spectral solver is exact on noiseless orthogonal subspaces; the trained denoiser stays close
    assert "spectral      error 0.000" in run.text
    assert float(re.search(r"trained\s+error (\d\.\d+)", run.text)[1]) < 0.2
    # the quick sweep's table (rows d = 2, 4; columns N_k = 1..6): success exactly when N_k >= d
    table = run.text.split("spectral: success rate (rows d, columns N_k)\n")[1].splitlines()
    for line in table[1:3]:
        d, *rates = line.split()
        assert [float(r) for r in rates] == [float(n >= int(d)) for n in range(1, 7)], line
    assert_agrees_with_stored('subspace_clustering.ipynb', run)   # the outputs committed with the notebook
