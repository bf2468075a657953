"""Top-level CLI: help lists the command groups; bad configs and checkpoints fail with exit code 2."""
from __future__ import annotations

import pytest
import torch

from genlowdim.cli import build_parser, main
from genlowdim.runtime import save_checkpoint


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "sample"):
        assert command in text


def test_train_without_family_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "needs a top-level 'family' key" in capsys.readouterr().err


def test_unknown_family_and_missing_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("family: quantum\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown family 'quantum'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_sample_with_foreign_checkpoint(tmp_path, capsys):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"family": "martian", "config": {}})
    assert main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "s")]) == 2
    assert "unknown family 'martian'" in capsys.readouterr().err
    torch.save({"a": 1}, tmp_path / "plain.pt")
    assert main(["sample", "--checkpoint", str(tmp_path / "plain.pt"), "--out", str(tmp_path)]) == 2


COMMANDS = {"train", "sample", "data", "reconstruct", "optimize", "models", "demo", "evaluate", "lowrank",
            "likelihood", "analyse", "analyse-memorisation", "csp", "relax"}


def _subcommands(parser):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_family_registers_its_commands_and_each_answers_help(capsys):
    commands = _subcommands(build_parser())
    assert set(commands) == COMMANDS
    nested = {name: set(_subcommands(commands[name])) for name in ("data", "lowrank", "likelihood")}
    assert nested["data"] == {"info", "check", "import"}
    assert nested["lowrank"] == {"sweep", "memorisation", "digits"}
    for argv in [[c] for c in sorted(COMMANDS)] + [[g, a] for g, acts in nested.items() for a in sorted(acts)]:
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--help"])
        assert exc.value.code == 0, argv
        assert capsys.readouterr().out.startswith(f"usage: genlowdim {' '.join(argv)}"), argv
