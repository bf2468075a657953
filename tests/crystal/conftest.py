"""Fixtures of the crystal tests: one intra-op thread per module, and an untrained tiny CDVAE."""
import pytest
import torch

from genlowdim.crystal.cdvae.config import load_crystal_config
from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split, resolve_max_atoms

TINY = "configs/crystal/tiny.yaml"


@pytest.fixture(scope="module")
def module_one_thread():
    """One intra-op thread for a whole module: on a shared 2-core box, two threads per tiny op mostly wait
    on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_cfg(module_one_thread):
    """An untrained tiny CDVAE (with its property head) and its config, scalers fitted on 20 training
    crystals: decodes quickly; the weights do not matter to the tests that use it."""
    cfg = load_crystal_config(TINY)
    torch.manual_seed(0)
    model = build_model(cfg, resolve_max_atoms(cfg)).eval()
    fit_scalers(model, load_split(cfg, "train", 20))
    return model, cfg
