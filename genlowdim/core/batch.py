"""Batch helpers: how a noise level broadcasts over a batch, and per-sample reductions.

Two batch layouts are used throughout the core:

* vectors ``x: (B, n, ...)`` — sample ``b`` is ``x[b]``;
* graphs ``x: (N, 3)`` with ``batch_index: (N,)`` (values in ``0..G-1``) — graph ``g`` is
  ``x[batch_index == g]``, as in torch_geometric's ``Batch.batch``.

Per-sample sigma: a 0-dim sigma applies to the whole batch; a sigma of shape ``(B,)`` is reshaped to
``(B, 1, ..., 1)`` so that it broadcasts against ``x`` row-wise (:func:`expand_sigma`). For graphs a
per-graph sigma ``(G,)`` is first taken to atoms with :func:`per_graph_to_nodes`.
"""
from __future__ import annotations

import torch

__all__ = ["append_dims", "expand_sigma", "per_graph_to_nodes", "per_sample_mean", "num_graphs"]


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``t`` until it has ``ndim`` dims: ``(B,) -> (B, 1, ..., 1)``."""
    if t.ndim > ndim:
        raise ValueError(f"append_dims: tensor has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def expand_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Return ``sigma`` as a tensor on x's device/dtype that broadcasts against ``x``.

    sigma: python number, 0-dim tensor, ``(1,)`` or ``(B,)`` with ``B = x.shape[0]``.
    Returns a 0-dim tensor or a ``(B, 1, ..., 1)`` tensor with ``x.ndim`` dims.
    """
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma.ndim == 0:
        return sigma
    if sigma.ndim == 1 and sigma.shape[0] == 1:
        return sigma.reshape(())
    if sigma.ndim == 1 and sigma.shape[0] == x.shape[0]:
        return append_dims(sigma, x.ndim)
    if sigma.shape == x.shape[: sigma.ndim]:
        return append_dims(sigma, x.ndim)
    raise ValueError(
        f"sigma of shape {tuple(sigma.shape)} does not broadcast to a batch x of shape {tuple(x.shape)}: "
        "use a 0-dim sigma or one value per row of x (shape (B,))"
    )


def num_graphs(batch_index: torch.Tensor, num_samples: int | None = None) -> int:
    """Number of graphs G in a batch index ``(N,)``; ``num_samples`` (if given) wins and is checked."""
    if batch_index.ndim != 1 or batch_index.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"batch_index must be a 1-D integer tensor, got shape {tuple(batch_index.shape)} "
            f"and dtype {batch_index.dtype}"
        )
    if batch_index.numel() and int(batch_index.min()) < 0:
        raise ValueError("batch_index has negative entries")
    seen = int(batch_index.max()) + 1 if batch_index.numel() else 0
    if num_samples is None:
        return seen
    if seen > num_samples:
        raise ValueError(f"batch_index refers to graph {seen - 1} but num_samples={num_samples}")
    return int(num_samples)


def per_graph_to_nodes(values: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Take per-graph values ``(G, ...)`` to their nodes: ``(N, ...)`` with ``out[i] = values[batch_index[i]]``."""
    if batch_index.numel() and int(batch_index.max()) >= values.shape[0]:
        raise ValueError(
            f"per_graph_to_nodes: batch_index refers to graph {int(batch_index.max())} "
            f"but only {values.shape[0]} per-graph values were given"
        )
    return values.index_select(0, batch_index.to(values.device))


def per_sample_mean(
    values: torch.Tensor, batch_index: torch.Tensor | None = None, num_samples: int | None = None
) -> torch.Tensor:
    """Mean of ``values`` per sample.

    values: ``(B, ...)`` without ``batch_index`` -> mean over all non-batch dims, ``(B,)``;
    ``(N, ...)`` with ``batch_index: (N,)`` -> mean over each node's feature dims, then over the nodes of
    each graph with ``torch_geometric.utils.scatter(..., reduce="mean")``, ``(G,)``. Graphs without nodes
    get 0.
    """
    per_row = values.reshape(values.shape[0], -1).mean(dim=1) if values.ndim > 1 else values
    if batch_index is None:
        return per_row
    if batch_index.shape != (values.shape[0],):
        raise ValueError(
            f"batch_index has shape {tuple(batch_index.shape)} but values have {values.shape[0]} rows"
        )
    from torch_geometric.utils import scatter

    size = num_graphs(batch_index, num_samples)
    return scatter(per_row, batch_index.to(values.device), dim=0, dim_size=size, reduce="mean")
