"""The batch writer's lock: one run per output folder at a time; a dead run's lock is taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from genlowdim.structures.batches import LOCK_NAME, BatchWriter, OutputInUseError

ROOT = Path(__file__).resolve().parents[2]


def _lock(out: Path, pid: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "token": "other"}))
    return out / LOCK_NAME


def test_a_folder_in_use_by_a_live_process_is_refused(tmp_path):
    _lock(tmp_path, os.getppid())   # the test runner's parent: alive, and not this process
    with pytest.raises(OutputInUseError, match=rf"{tmp_path} is in use by another run \(pid {os.getppid()}"):
        BatchWriter(tmp_path, {"seed": 1})
    assert not (tmp_path / "batches").exists()


def test_a_dead_process_lock_is_taken_over_and_released(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = _lock(tmp_path, int(done.stdout))   # that process has exited
    writer = BatchWriter(tmp_path, {"seed": 1})
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    writer.close()
    assert not lock.exists()


def test_runs_one_after_another_in_one_process(tmp_path):
    first = BatchWriter(tmp_path, {"seed": 1})
    second = BatchWriter(tmp_path, {"seed": 1})   # the first is done with the folder
    del first                                       # collecting it leaves the second one's lock alone
    assert (tmp_path / LOCK_NAME).exists()
    second.close()
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_processes_into_one_folder(tmp_path):
    """The issue's case: a second sample run into a folder another run is writing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from genlowdim.structures.batches import BatchWriter; "
         f"w = BatchWriter({str(tmp_path)!r}, {{'seed': 1}}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(OutputInUseError, match=f"pid {holder.pid}"):
            BatchWriter(tmp_path, {"seed": 2})
    finally:
        holder.communicate("", timeout=60)   # the holder exits and releases its lock
    assert not (tmp_path / LOCK_NAME).exists()
    BatchWriter(tmp_path, {"seed": 1}).close()
