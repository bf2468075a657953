"""Time to the first line of output of every working command, beside what a bare ``import torch`` costs on
the same machine in the same run (the baseline: the first line comes before any numerical library loads, so
on a loaded machine both grow together).

Each command runs as a subprocess (``python -m genlowdim ...``), its stdout and stderr read line by line; it is
stopped once its first line arrives (``--full`` lets it finish and also prints its wall time). Inputs: the
shipped perov_5 model and perov_5's test split, outputs in a temporary folder.

    .venv/bin/python bench/startup.py            # seconds
    .venv/bin/python bench/startup.py --full     # minutes: every command runs to its end
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(d: Path) -> list[list[str]]:
    test = str(ROOT / "datasets/perov_5/test.csv.gz")
    return [["--version"], ["--help"], ["sample", "--help"],
            ["sample", "--model", "perov_5", "--num", "2", "--batch-size", "2", "--out", str(d / "s")],
            ["evaluate", str(d / "s"), "--reference", "perov_5:test", "--out", str(d / "e")],
            ["csp", "--model", "perov_5", "--formula", "SrTiO3", "--samples", "2", "--out", str(d / "c")],
            ["relax", str(d / "s"), "--steps", "2", "--out", str(d / "r")],
            ["data", "info", "perov_5"], ["data", "check", test], ["models"],
            ["reconstruct", "--model", "perov_5", "--num", "2", "--out", str(d / "rc")],
            ["train", "--config", str(ROOT / "configs/crystal/tiny.yaml"), "--out", str(d / "t")]]


def first_line(argv: list[str], full: bool) -> tuple[float, float | None, str]:
    """(seconds to the first non-empty line, seconds to the end or None, that line)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENLOWDIM_QUIET": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first, line = None, ""
    for text in proc.stdout:
        if text.strip():
            first, line = time.perf_counter() - start, text.strip()
            break
    if not full:
        proc.kill()
        proc.wait()
        return first, None, line
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="let every command run to its end")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"load average at start: {load}")
    base, _, _ = first_line([sys.executable, "-c", "import torch; print('torch')"], False)
    print(f"| command | first line (s) | x import torch ({base:.2f} s) |" + (" end (s) |" if args.full else "")
          + " first line |")
    print("|---|---|---|" + ("---|" if args.full else "") + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for argv in commands(Path(tmp)):
            t, end, line = first_line([sys.executable, "-m", "genlowdim", *argv], args.full)
            name = " ".join(a if not a.startswith(tmp) else "…" for a in argv)
            ends = f" {end:.2f} |" if args.full else ""
            shown = "no output" if t is None else f"{t:.2f} | {t / base:.2f}"
            print(f"| `{name}` | {shown} |{ends} {line[:70]} |", flush=True)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"load average at end: {load}")


if __name__ == "__main__":
    main()
