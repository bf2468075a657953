"""Sampler speed and quality against decoder calls for a trained CDVAE checkpoint (or ``--model perov_5``):
ALD at CDVAE's settings (50 levels x 100 steps) and the fast sampler in the same run as the cheaper ones, at
equal sample counts, judged against the **val** split (samplers are chosen there; ``--split test`` only for
a final figure).

Reports decoder calls per crystal (per batch: every call moves the whole batch), crystals/s, structural and
compositional validity and COV-R/COV-P against the first ``--num-ref`` crystals of the split. With ``--out``
every row is appended to ``DIR/rows.jsonl`` as soon as it is measured (a rerun skips finished rows) and
``DIR/calls.png`` plots quality against calls.
Usage: python bench/sampling.py --model perov_5 [--num 500] [--num-ref 500] [--out runs/calls]
       [--samplers ald,ald_fast,ald_fast:2:1e-4,heun:50,pc:50]
       (name[:steps[:step_lr[:type_update]]]; step_lr for ALD only, empty fields keep the checkpoint's)
"""
from __future__ import annotations

import argparse
import time

SAMPLERS = "ald,ald_fast,pc:50"


def parse_spec(spec: str) -> tuple[str, int | None, float | None, str | None]:
    """'name[:steps[:step_lr[:type_update]]]' -> (name, steps, step_lr, type_update), None where empty."""
    parts = spec.split(":")
    if len(parts) > 4 or not parts[0]:
        raise SystemExit(f"--samplers: bad entry {spec!r}; expected name[:steps[:step_lr[:type_update]]]")
    parts += [""] * (4 - len(parts))
    steps = int(parts[1]) if parts[1] else None
    step_lr = float(parts[2]) if parts[2] else None
    if step_lr is not None and parts[0] not in ("ald", "ald_fast"):
        raise SystemExit(f"--samplers: {spec!r}: a step_lr applies to ald/ald_fast only")
    return parts[0], steps, step_lr, parts[3] or None


def main() -> None:
    from dataclasses import replace

    import torch

    import json
    from pathlib import Path

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.pretrained import checkpoint_path
    from genlowdim.crystal.cdvae.sampling import generate
    from genlowdim.metrics.evaluate import evaluate_generation
    from genlowdim.structures.datasets import load_structures

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--model", default=None, help="a shipped model (e.g. perov_5) instead of --checkpoint")
    p.add_argument("--split", choices=["val", "test"], default="val", help="reference split (tune on val)")
    p.add_argument("--out", default=None, help="folder for rows.jsonl (resumable) and calls.png")
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--num-ref", type=int, default=1000)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema")
    p.add_argument("--samplers", default=SAMPLERS, help="comma-separated name[:steps[:step_lr]]")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(checkpoint_path(args.checkpoint, args.model), use_ema=args.weights == "ema",
                            task="cdvae")
    ref = load_structures("perov_5", args.split)[1][: args.num_ref]
    out = Path(args.out) if args.out else None
    done = _read_rows(out)
    rows = []
    for spec in args.samplers.split(","):
        if spec in done:
            rows.append(done[spec])
            continue
        name, steps, step_lr, type_update = parse_spec(spec)
        scfg = cfg.sampling
        if step_lr is not None:
            scfg = scfg.with_spec(name, step_lr=step_lr)
        if type_update is not None:
            scfg = replace(scfg, type_update=type_update)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        decoded = generate(model, args.num, scfg, sampler=name, steps=steps, generator=gen)
        seconds = time.perf_counter() - t0
        report = evaluate_generation(decoded.to_structures(), ref, dataset="perov_5", seed=0,
                                     reference_cache_key=f"perov_5:{args.split}[:{args.num_ref}]", workers=2,
                                     show_progress=False)
        m = report["metrics"]
        rows.append((spec, decoded.decoder_calls, args.num / seconds, m["struct_valid"], m["comp_valid"],
                     m["cov_recall"], m["cov_precision"]))
        print(rows[-1], flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "rows.jsonl", "a") as f:
                f.write(json.dumps({"spec": spec, "row": rows[-1], "num": args.num, "num_ref": args.num_ref,
                                    "split": args.split}) + "\n")
    if out is not None:
        _plot(rows, out / "calls.png", f"{args.num} crystals vs {args.num_ref} perov_5 {args.split}")
    print(f"\n{args.num} crystals per sampler (one batch), {args.threads} thread(s), weights={args.weights}, "
          f"COV against the first {args.num_ref} perov_5 {args.split} crystals")
    print(f"{'sampler':<18}{'calls':>7}{'cryst/s':>9}{'struct':>8}{'comp':>7}{'COV-R':>7}{'COV-P':>7}")
    for r in rows:
        print(f"{r[0]:<18}{r[1]:>7}{r[2]:>9.3f}{r[3]:>8.3f}{r[4]:>7.3f}{r[5]:>7.3f}{r[6]:>7.3f}")


def _read_rows(out) -> dict:
    """Rows already measured into ``out/rows.jsonl``, by spec."""
    import json

    if out is None or not (out / "rows.jsonl").exists():
        return {}
    return {r["spec"]: tuple(r["row"]) for r in map(json.loads, (out / "rows.jsonl").read_text().splitlines())}


def _plot(rows, path, title: str) -> None:
    """Validity and coverage against decoder calls (log axis), one marker per sampler family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def family(spec: str) -> str:   # ALD rows by step_lr (their steps per level set the calls), others by name
        parts = spec.split(":")
        if parts[0] in ("ald", "ald_fast"):
            lr = parts[2] if len(parts) > 2 and parts[2] else {"ald": "1e-4", "ald_fast": "2.5e-5"}[parts[0]]
            return f"ALD step_lr {lr}"
        return parts[0]

    import itertools

    colors = itertools.cycle(plt.get_cmap("tab10").colors)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for name in sorted({family(r[0]) for r in rows}):
        mine = sorted((r for r in rows if family(r[0]) == name), key=lambda r: r[1])
        color = next(colors)
        calls = [r[1] for r in mine]
        axes[0].plot(calls, [r[3] for r in mine], "o-", color=color, label=f"{name} struct")
        axes[0].plot(calls, [r[4] for r in mine], "s--", color=color, label=f"{name} comp")
        axes[1].plot(calls, [r[5] for r in mine], "o-", color=color, label=f"{name} COV-R")
        axes[1].plot(calls, [r[6] for r in mine], "s--", color=color, label=f"{name} COV-P")
    low, high = min(r[1] for r in rows), max(r[1] for r in rows)
    calls = [c for c in (25, 50, 100, 500, 5000) if 0.9 * low <= c <= 1.1 * high]
    for ax, ylabel in zip(axes, ["validity (fraction)", "coverage (fraction)"]):
        ax.set_xscale("log")
        ax.set_xticks(calls, [str(c) for c in calls])
        ax.minorticks_off()
        ax.set_xlabel("decoder calls per crystal")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
