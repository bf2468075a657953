"""Relaxation on several cores: forked worker processes with one torch thread each.

A CHGNet call on a batch of 5-atom cells is too small for torch's intra-op threads to pay (two threads on
two cores were slower than one, ``bench/relax.py --threads 2``), so the cores are used by processes
instead: each takes whole parts of the work and runs them with one thread. The workers are forked, so they
inherit the loaded potential and whatever the task closes over; nothing is pickled on the way in except the
job indices, and each part's result comes back pickled.
"""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Iterator, Sequence

from genlowdim.runtime import usable_cpus

__all__ = ["resolve_workers", "map_in_workers"]

_TASK: Callable[[Any], Any] | None = None   # the task of the pool being run (inherited by the fork)


def resolve_workers(workers: int | None) -> int:
    """``None`` or 0 -> every usable core; otherwise ``workers`` (at least 1)."""
    if workers is None or workers == 0:
        return usable_cpus()
    if workers < 0:
        raise ValueError(f"workers {workers}: expected a positive number, or 0 for every usable core")
    return int(workers)


def _start_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run(job):
    return job, _TASK(job)


def map_in_workers(task: Callable[[Any], Any], jobs: Sequence, workers: int) -> Iterator[tuple[Any, Any]]:
    """``(job, task(job))`` for every job, in the order they finish; with ``workers`` > 1 (and more than one
    job) in that many forked processes of one torch thread each, otherwise here, in order. ``task`` may be
    a closure: the workers are forked after it is set."""
    global _TASK
    workers = min(workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            yield job, task(job)
        return
    if _TASK is not None:
        raise RuntimeError("map_in_workers does not nest: a pool of workers is already running")
    _TASK = task
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker) as pool:
            yield from pool.imap_unordered(_run, jobs, chunksize=1)
    finally:
        _TASK = None
