"""Atomic writes, standard JSON, checkpoints loaded with weights_only and a family check."""
from __future__ import annotations

import io
import json
import math
import re
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

from genlowdim.runtime import (CheckpointError, atomic_write_text, library_versions, load_checkpoint,
                               progress, save_checkpoint, write_json)


def test_write_json_handles_numpy_torch_and_nan(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": np.float32(0.5), "b": torch.tensor([1.0, 2.0]), "c": math.nan,
                      "d": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [1.0, 2.0], "c": None, "d": [0, 1, 2]}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "x.txt", "hello")
    atomic_write_text(tmp_path / "x.txt", "again")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    assert (tmp_path / "x.txt").read_text() == "again"


def test_checkpoint_round_trip_and_family_check(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"family": "lowrank", "config": {"k": 2}, "state_dict": {"w": torch.ones(2)}})
    payload = load_checkpoint(path, family="lowrank")
    assert payload["config"] == {"k": 2} and torch.equal(payload["state_dict"]["w"], torch.ones(2))
    assert payload["versions"]["torch"] == metadata.version("torch")
    with pytest.raises(CheckpointError, match=r"c\.pt: checkpoint is of the 'lowrank' family, expected 'crystal'"):
        load_checkpoint(path, family="crystal")


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable genlowdim checkpoint \(truncated or "
                                              r"corrupt: not a PyTorch zip archive, 16 bytes\)$"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "whole.pt", {"family": "lowrank", "config": {}, "w": torch.ones(1000)})
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cut\.pt: .*truncated or corrupt: a zip archive cut short, "
                                              rf"{len(data) // 2} bytes") as info:
        load_checkpoint(tmp_path / "cut.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: .*\(the file is empty\)"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save({"family": "crystal", "hook": print}, tmp_path / "pickled.pt")   # arbitrary objects: refused
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        load_checkpoint(tmp_path / "pickled.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no 'family' entry"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="lacks 'config'"):
        save_checkpoint(tmp_path / "x.pt", {"family": "crystal"})


def test_library_versions_lists_result_relevant_libraries():
    versions = library_versions()
    for name in ("python", "genlowdim", "torch", "numpy"):
        assert versions[name]


def _updates(text: str) -> list[str]:
    """The bar states a log would show: tqdm separates them with carriage returns and newlines."""
    return [u for u in re.split(r"[\r\n]+", text) if u.strip()]


def test_progress_off_a_terminal_writes_a_few_lines(monkeypatch):
    monkeypatch.delenv("GENLOWDIM_QUIET", raising=False)
    log = io.StringIO()                    # what a redirected stderr is: not a TTY
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress(range(10_000), desc="steps"):
        pass
    updates = _updates(log.getvalue())
    assert 1 <= len(updates) <= 3, updates  # the opening state and the closing summary, nothing between
    assert "10000/10000" in updates[-1] and len(updates[-1]) <= 80


def test_progress_on_a_terminal_updates_live_and_quiet_silences(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("GENLOWDIM_QUIET", raising=False)
    tty = Terminal()
    for _ in progress(range(300), file=tty, mininterval=0, miniters=1):
        pass
    assert len(_updates(tty.getvalue())) > 100
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    quiet = Terminal()
    for _ in progress(range(300), file=quiet):
        pass
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, expected):
    """metrics.json and friends are readable by the group under the usual umask (the temporary file behind
    the atomic write is 0600 until it is given the mode a plain open() would have given)."""
    import os

    old = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"a": 1})
        atomic_write_text(tmp_path / "note.txt", "x")
    finally:
        os.umask(old)
    for name in ("metrics.json", "note.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_a_rewritten_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "shared.json"
    write_json(path, {"a": 1})
    path.chmod(0o640)
    write_json(path, {"a": 2})
    assert path.stat().st_mode & 0o777 == 0o640


def test_checkpoints_carry_a_checksum_checked_on_loading(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"family": "lowrank", "config": {}, "state_dict": {"w": torch.arange(4000.0)}})
    assert "checksum" not in load_checkpoint(path)   # checked, then removed: callers see what they saved
    data = bytearray(path.read_bytes())
    start = data.find(torch.arange(4000.0).numpy().tobytes())
    data[start + 100:start + 500] = b"\xff" * 400      # inside the tensor: the zip's CRC is not checked
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.pt: corrupt checkpoint"):
        load_checkpoint(path)


def test_checkpoints_written_before_checksums_still_load(tmp_path):
    from genlowdim.runtime import CHECKPOINT_FORMAT

    payload = {"family": "lowrank", "config": {}, "state_dict": {"w": torch.ones(3)}, "format": CHECKPOINT_FORMAT}
    torch.save(payload, tmp_path / "old.pt")
    assert torch.equal(load_checkpoint(tmp_path / "old.pt")["state_dict"]["w"], torch.ones(3))


def test_the_shipped_models_load_unchanged():
    """Files saved without a checksum (the property predictor) load as exactly what torch.load gives; files
    saved with one (the warm-restarted CDVAE) load with it checked, the same tensors."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "genlowdim" / "crystal" / "pretrained" / "perov_5"
    kinds = set()
    for path in sorted(folder.glob("*.pt")):
        raw = torch.load(path, map_location="cpu", weights_only=True)
        loaded = load_checkpoint(path)
        kinds.add("checksum" in raw)
        assert sorted(k for k in raw if k != "checksum") == sorted(k for k in loaded if k != "checksum")
        for key, value in raw["state_dict"].items():
            assert torch.equal(value, loaded["state_dict"][key])
    assert kinds == {True, False}   # both kinds are shipped, so both paths are exercised
