"""The resumable batch engine of every crystal run written to disk (generate, reconstruct, CSP).

A run is ``num_batches`` batches; batch k draws its noise from a generator seeded with (seed, k) only, so an
interrupted run resumed into the same folder, or the same run split over processes, equals one uninterrupted
run. Finished batches (``batches/batch_k/done.json``) of the same settings are skipped; other settings stop with
:class:`~genlowdim.structures.batches.OutputConflictError` unless ``overwrite`` (see
:mod:`genlowdim.structures.batches`).

Under ``torchrun --nproc_per_node N`` each process runs the batches k with k % N == its rank and the first
process merges them after all are done.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from genlowdim.runtime import progress
from genlowdim.structures.batches import BatchWriter
from genlowdim.distributed import barrier, init_distributed

__all__ = ["BatchRun", "batch_generator", "item_id", "model_digest", "model_device", "decode_totals"]


def batch_generator(device, seed: int, k: int) -> torch.Generator:
    """Batch k's generator: depends on (seed, k) only, not on the process that runs the batch."""
    return torch.Generator(device).manual_seed(seed * 1_000_003 + k)


def item_id(item, split: str, index: int) -> str:
    """A dataset crystal's id in outputs: its ``material_id``, else ``<split>_<index:06d>``."""
    mid = getattr(item, "material_id", None)
    return str(mid) if mid is not None else f"{split}_{index:06d}"


def model_digest(model) -> str:
    """sha256 of the model's parameters and buffers (names, dtypes, shapes, values): the same weights give
    the same digest whichever file or device they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def model_device(model) -> torch.device:
    """The device a model's noise is drawn on: its parameters', the CPU for a model without any."""
    params = getattr(model, "parameters", None)
    first = next(params(), None) if params is not None else None
    return first.device if first is not None else torch.device("cpu")


def decode_totals(infos: list[dict]) -> dict:
    """Summed over finished batches: crystals whose predicted lattice needed the decoder's clamp, and decoder
    evaluations (each evaluates a whole batch)."""
    return {"lattice_clamped": int(sum(sum(i.get("lattice_clamped", [])) for i in infos)),
            "decoder_calls": int(sum(i.get("decoder_calls", 0) for i in infos))}


@dataclass
class BatchRun:
    """One output folder's writer and this process's share of the batches."""
    writer: BatchWriter
    rank: int
    world: int
    device: torch.device

    @classmethod
    def open(cls, out_dir: str | Path, settings: dict, *, device, overwrite: bool = False,
             cleared: Sequence[str] = (), write_cifs: bool = True) -> BatchRun:
        """The run in ``out_dir``; with several processes the first one checks or clears the folder."""
        device = torch.device(device)
        rank, world = init_distributed(device)
        kw = {"cleared": tuple(cleared), "write_cifs": write_cifs}
        if rank == 0:
            writer = BatchWriter(out_dir, settings, overwrite=overwrite, **kw)
        barrier(world)
        if rank != 0:
            writer = BatchWriter(out_dir, settings, overwrite=False, **kw)
        return cls(writer, rank, world, device)

    @property
    def first(self) -> bool:
        """Whether this process merges the batches and writes the manifest."""
        return self.rank == 0

    def pending(self, num_batches: int, desc: str, items: int | None = None, unit: str = "batch") -> Iterator[int]:
        """The batches this process still has to run. Only the first process draws a progress bar, counted in
        ``items`` (e.g. crystals, spread evenly over the batches; default: the batches) of ``unit``."""
        total = items or num_batches
        bar = progress(total=total, desc=desc, unit=unit, **({} if self.first else {"disable": True}))
        for k in range(num_batches):
            if k % self.world == self.rank and not self.writer.done(k):
                yield k
            bar.update(min(total, round((k + 1) * total / num_batches)) - bar.n)
        bar.close()

    def generator(self, seed: int, k: int) -> torch.Generator:
        return batch_generator(self.device, seed, k)

    def barrier(self) -> None:
        barrier(self.world)
