"""CDVAE under DDP with two CPU processes (gloo): ranks stay identical, and the logged loss is the mean of
what one process computes on each rank's shard of the global batch with that rank's generator."""
import csv
import os
import socket

import torch

CONFIG = "configs/crystal/tiny.yaml"
OVERRIDES = ["train.max_steps=2", "train.log_every=1", "train.batch_size=8", "data.train_limit=16"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), GENLOWDIM_QUIET="1")
    torch.set_num_threads(1)
    from genlowdim.crystal.cdvae.training import train_cdvae
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.runtime import load_checkpoint

    train_cdvae(load_crystal_config(CONFIG, OVERRIDES), out)
    torch.save(load_checkpoint(os.path.join(out, "last.pt"))["state_dict"], os.path.join(out, f"rank{rank}.pt"))
    # the last process to stop leaves the group torn down for the next test
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _expected_first_loss(world: int) -> float:
    from torch_geometric.data import Batch

    from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.train import epoch_order

    cfg = load_crystal_config(CONFIG, OVERRIDES)
    items = load_split(cfg, "train", cfg.data.train_limit)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, 5)
    fit_scalers(model, items)
    first = epoch_order(len(items), cfg.train.seed, 0)[: cfg.train.batch_size]
    losses = []
    for rank in range(world):   # the engine seeds rank r's generator with seed + 7919 r
        gen = torch.Generator().manual_seed(cfg.train.seed + 7919 * rank)
        shard = Batch.from_data_list([items[i] for i in first[rank::world].tolist()])
        losses.append(float(model(shard, gen, True)[0].detach()))
    return sum(losses) / world


def test_two_processes_stay_in_sync_and_average_the_shard_losses(tmp_path):
    out = str(tmp_path / "ddp")
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ranks = [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
    with open(os.path.join(out, "log.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = _expected_first_loss(2)
    finally:
        torch.set_num_threads(before)
    assert abs(float(rows[0]["loss"]) - expected) <= 1e-4 * abs(expected)


def _tiny_model():
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.crystal.cdvae.training import build_model, fit_scalers, load_split

    cfg = load_crystal_config(CONFIG)
    torch.manual_seed(0)
    model = build_model(cfg, 5).eval()
    fit_scalers(model, load_split(cfg, "train", 20))
    return model, cfg


def _decode_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), GENLOWDIM_QUIET="1")
    torch.set_num_threads(1)
    from genlowdim.crystal.tasks.generate import reconstruct, sample_crystals

    model, cfg = _tiny_model()
    sample_crystals(model, cfg, 5, os.path.join(out, "samples"), batch_size=2, seed=4, sampler="ald_fast")
    reconstruct(model, cfg, "val", os.path.join(out, "recon"), num=5, batch_size=2, seed=4, sampler="ald_fast",
                protocol=_posterior_samples(cfg))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _posterior_samples(cfg):
    """Decode settings that reconstruct from posterior samples (z = μ + σ·ε: noise drawn per batch)."""
    from genlowdim.crystal.cdvae.protocols import resolve

    return resolve("genlowdim", "reconstruct", cfg, sampler="ald_fast", latent="sample")[1]


def test_sampling_and_reconstruction_shared_by_two_processes_equal_one_process(tmp_path, monkeypatch):
    """Each process decodes the batches k ≡ rank (mod 2) with batch k's own generator; the merged files
    equal those of one process, byte for byte."""
    from genlowdim.crystal.tasks.generate import reconstruct, sample_crystals

    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    shared = str(tmp_path / "two")
    torch.multiprocessing.spawn(_decode_worker, args=(2, _free_port(), shared), nprocs=2, join=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, cfg = _tiny_model()
        one = tmp_path / "one"
        sample_crystals(model, cfg, 5, one / "samples", batch_size=2, seed=4, sampler="ald_fast")
        reconstruct(model, cfg, "val", one / "recon", num=5, batch_size=2, seed=4, sampler="ald_fast",
                    protocol=_posterior_samples(cfg))
    finally:
        torch.set_num_threads(before)
    for name in ("samples/samples.extxyz", "recon/predictions.extxyz", "recon/truth.extxyz"):
        assert (tmp_path / "two" / name).read_text() == (one / name).read_text(), name
    import json

    manifest = json.loads((tmp_path / "two" / "samples" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["count"] == 5 and manifest["batches"] == [0, 1, 2]
