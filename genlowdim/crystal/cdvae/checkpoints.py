"""Trained crystal models from checkpoints: ``load_model`` and the property predictor as the evaluation's
``property_fn`` (the digest of the weights that outputs record is :func:`genlowdim.crystal.runs.model_digest`)."""
from __future__ import annotations

import torch
from torch_geometric.data import Batch

from genlowdim.crystal.cdvae.config import config_from_dict
from genlowdim.crystal.data import CrystalDataset
from genlowdim.crystal.cdvae.training import FAMILY, build_model
from genlowdim.runtime import CheckpointError, load_checkpoint
from genlowdim.structures.datasets import LoadReport, record_from_structure


def load_model(checkpoint, device="cpu", use_ema: bool = True, task: str | None = None):
    """(model in eval mode, config) from a checkpoint path or an already loaded payload.

    Uses the EMA weights when the run kept them. ``task`` checks the kind of model stored. Configs written
    before named sampler specs are translated (:func:`genlowdim.crystal.cdvae.config.translate_old_keys`)."""
    payload = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, family=FAMILY)
    if payload.get("family") != FAMILY:
        raise CheckpointError(f"checkpoint is of the {payload.get('family')!r} family, expected 'crystal'")
    cfg = config_from_dict(payload["config"])
    if task is not None and cfg.task != task:
        raise CheckpointError(f"checkpoint holds a {cfg.task!r} model, this command needs a {task!r} model")
    model = build_model(cfg, payload["extra_state"]["max_atoms"])
    state = payload.get("ema_state_dict") if use_ema and payload.get("ema_state_dict") else payload["state_dict"]
    model.load_state_dict(state)
    return model.to(device).eval(), cfg


def property_fn_from_model(property_model, batch_size: int = 256):
    """``fn(structures) -> list[float]``: a trained property predictor as the evaluation's ``property_fn``
    (CDVAE's ``wdist_prop``). Structures are preprocessed like the datasets (Niggli-reduced)."""
    device = next(property_model.parameters()).device

    @torch.no_grad()
    def fn(structures):
        records = [record_from_structure(s, f"s{i}") for i, s in enumerate(structures)]
        ds = CrystalDataset(records, LoadReport(source="structures", total=len(records)))
        out = []
        for i in range(0, len(ds), batch_size):
            batch = Batch.from_data_list([ds[j] for j in range(i, min(i + batch_size, len(ds)))]).to(device)
            out.extend(property_model.predict(batch).tolist())
        return out
    return fn


def property_fn_from_checkpoint(checkpoint, device="cpu"):
    """:func:`property_fn_from_model` of a property-predictor checkpoint (path or payload); CheckpointError
    when it holds another kind of model."""
    return property_fn_from_model(load_model(checkpoint, device, task="property")[0])
