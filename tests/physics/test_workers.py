"""Relaxation shared by forked worker processes gives what one process gives."""
import dataclasses
import os

import numpy as np
import pytest
import torch

from genlowdim.physics.potential import load_potential
from genlowdim.physics.relax import RelaxSettings, relax_structures
from genlowdim.physics.workers import map_in_workers, resolve_workers
from genlowdim.runtime import usable_cpus
from tests.physics.test_relax import perturbed, srtio3


def test_map_in_workers_runs_a_closure_in_other_processes_with_one_thread():
    offset = 10   # a closure: the workers are forked after the task is set, nothing of it is pickled
    out = dict(map_in_workers(lambda k: (k + offset, os.getpid(), torch.get_num_threads()), range(4), 2))
    assert sorted(out) == [0, 1, 2, 3]
    assert [out[k][0] for k in range(4)] == [10, 11, 12, 13]
    assert all(pid != os.getpid() for _, pid, _ in out.values())
    assert all(threads == 1 for _, _, threads in out.values())
    here = list(map_in_workers(lambda k: os.getpid(), [0, 1], 1))
    assert here == [(0, os.getpid()), (1, os.getpid())]   # one worker: here, in order


def test_resolve_workers():
    assert resolve_workers(0) == resolve_workers(None) == usable_cpus()
    assert resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers -1"):
        resolve_workers(-1)


def test_two_workers_relax_like_one_process():
    """Three structures in batches of 8: with two workers the batch is split (2 + 1) and each part relaxed
    in its own process; every structure ends where the single batch takes it (same steps, energies to
    float noise). The parent ran torch ops on two threads first, as a command that decoded crystals would."""
    structures = [srtio3(), perturbed(srtio3(), 0.1, seed=1), perturbed(srtio3(), 0.15, seed=2)]
    settings = RelaxSettings(optimizer="BFGS", fmax=0.05, steps=60, batch_size=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.randn(256, 256) @ torch.randn(256, 256)
        done = []
        alone = relax_structures(structures, settings, load_potential())
        shared = relax_structures(structures, dataclasses.replace(settings, workers=2), load_potential(),
                                  on_batch=done.append)
    finally:
        torch.set_num_threads(threads)
    assert sorted(done) == [1, 2]
    for a, b in zip(alone, shared):
        assert a.error is None and b.error is None
        assert a.steps == b.steps
        assert abs(a.energy_final - b.energy_final) < 1e-5
        assert np.allclose(a.relaxed.frac_coords, b.relaxed.frac_coords, atol=1e-4)
