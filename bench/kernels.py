"""Benchmark: exact MoLRG score for n=768, K=10, d=32 (batch 4,096), three ways in one run.

* ours  — ``genlowdim.core.molrg_score``: batched einsums over (K, n, d) bases, O(B (n + K d)) memory;
* loop  — the same maths with a Python loop over the K components (one matmul pair per component);
* dense — autograd of ``MixtureSameFamily(MultivariateNormal)`` log-density with n x n covariances.

Each (method, batch) runs in a fresh subprocess so that its peak memory is its own: on CPU the peak resident
set size (``ru_maxrss``) minus the RSS after the inputs are built; on CUDA ``torch.cuda.max_memory_allocated``
minus the inputs. Memory is shown at two batch sizes to expose linear growth. On CUDA the table also gives
the achieved bandwidth (bytes of x + bases read once / time). Usage::

    python bench/kernels.py [--device cpu|cuda] [--reps 3] [--batches 1024 4096] [--json out.json]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

N, K, D, SIGMA = 768, 10, 32, 0.5


def _inputs(batch: int, device: str):
    import torch

    g = torch.Generator().manual_seed(0)
    bases = torch.linalg.qr(torch.randn(K, N, D, generator=g))[0].to(device)
    log_weights = torch.randn(K, generator=g).log_softmax(0).to(device)
    x = (2 * torch.randn(batch, N, generator=g)).to(device)
    return x, bases, log_weights


def score_loop(x, bases, log_weights, sigma):
    """Per-component Python loop over k (same closed form as molrg_score, s = 1, no ambient noise)."""
    import torch

    gamma2 = sigma**2
    phi = 1.0 / (2 * gamma2 * (1 + gamma2))
    projs, logits = [], []
    for k in range(bases.shape[0]):
        proj = x @ bases[k]
        projs.append(proj)
        logits.append(log_weights[k] - 0.5 * bases.shape[2] * torch.log1p(torch.tensor(1 / gamma2)) + phi * proj.pow(2).sum(1))
    w = torch.stack(logits, 1).softmax(1)
    mix = sum(w[:, k : k + 1] * (projs[k] @ bases[k].T) for k in range(bases.shape[0]))
    return mix / (gamma2 * (1 + gamma2)) - x / gamma2


def score_dense(x, bases, log_weights, sigma):
    """Autograd of the dense mixture log-density (n x n covariances, Cholesky inside torch.distributions)."""
    import torch
    from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

    eye = torch.eye(bases.shape[1], device=x.device, dtype=x.dtype)
    cov = bases @ bases.transpose(1, 2) + sigma**2 * eye
    mixture = MixtureSameFamily(Categorical(logits=log_weights), MultivariateNormal(x.new_zeros(bases.shape[:2]), cov))
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    return grad


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _measure(method: str, batch: int, device: str, reps: int, queue) -> None:
    try:
        queue.put(_measure_inner(method, batch, device, reps))
    except BaseException as exc:  # report, don't leave the parent waiting
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _measure_inner(method: str, batch: int, device: str, reps: int) -> dict:
    import torch

    from genlowdim.core import molrg_score

    torch.manual_seed(0)
    fn = {"ours": lambda *a: molrg_score(*a, check=False), "loop": score_loop, "dense": score_dense}[method]
    x, bases, log_weights = _inputs(batch, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    else:
        base_mem = _rss_bytes()
    out = fn(x, bases, log_weights, SIGMA)  # warm-up (and the peak-memory run)
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x, bases, log_weights, SIGMA)
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base_mem
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_mem
    ref = molrg_score(x[:256].double(), bases.double(), log_weights.double(), SIGMA, check=False)
    err = ((out[:256].double() - ref).abs().max() / ref.abs().max()).item()
    best = min(times)
    gbs = (x.numel() + bases.numel()) * x.element_size() / best / 1e9
    return dict(method=method, batch=batch, device=device, seconds=best, points_per_s=batch / best,
                peak_mib=peak / 2**20, rel_err=err, gb_per_s=gbs if device == "cuda" else None)


def run(method: str, batch: int, device: str, reps: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(method, batch, device, reps, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        raise RuntimeError(f"benchmark subprocess for {method} batch={batch} exited with code {proc.exitcode}")
    result = queue.get()
    if "error" in result:
        raise RuntimeError(f"benchmark {method} batch={batch} on {device} failed: {result['error']}")
    return result


def table(rows: list[dict]) -> str:
    lines = ["| device | method | batch | time (s) | points/s | vs dense | peak mem (MiB) | rel. err | GB/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    dense = {(r["batch"], r["device"]): r["points_per_s"] for r in rows if r["method"] == "dense"}
    for r in rows:
        key = (r["batch"], r["device"])
        speed = f"{r['points_per_s'] / dense[key]:.1f}x" if key in dense else "-"
        gbs = f"{r['gb_per_s']:.1f}" if r["gb_per_s"] is not None else "-"
        lines.append(f"| {r['device']} | {r['method']} | {r['batch']} | {r['seconds']:.4f} | {r['points_per_s']:,.0f} | "
                     f"{speed} | {r['peak_mib']:.1f} | {r['rel_err']:.1e} | {gbs} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    rows = []
    for device in devices:
        for batch in args.batches:
            for method in ("ours", "loop", "dense"):
                rows.append(run(method, batch, device, args.reps))
                print(f"done {device} {method} batch={batch}: {rows[-1]['seconds']:.4f} s", flush=True)
    print(f"\nExact MoLRG score, n={N}, K={K}, d={D}, sigma={SIGMA}, float32, threads={torch.get_num_threads()}")
    print(table(rows))
    if args.json:
        from genlowdim.runtime import write_json

        write_json(args.json, {"n": N, "K": K, "d": D, "sigma": SIGMA, "rows": rows})


if __name__ == "__main__":
    main()
