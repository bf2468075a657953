"""Strict YAML configs: unknown keys, wrong types and malformed overrides are errors naming the key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from genlowdim.config import ConfigError, apply_overrides, dump_yaml, load_config, load_yaml, to_dict


@dataclass(frozen=True)
class Model:
    latent_dim: int = 256
    dropout: float = 0.0
    kind: Literal["soft", "hard"] = "soft"


@dataclass(frozen=True)
class Run:
    family: str
    model: Model = field(default_factory=Model)
    tags: list[str] = field(default_factory=list)
    max_minutes: float | None = None


def _write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_round_trip_and_overrides(tmp_path):
    path = _write(tmp_path, "family: crystal\nmodel:\n  latent_dim: 64\n")
    cfg = load_config(Run, path, ["model.dropout=1e-1", "max_minutes=30", "tags=[a, b]"])
    assert cfg == Run("crystal", Model(64, 0.1), ["a", "b"], 30.0)
    dump_yaml(cfg, tmp_path / "out.yaml")
    assert load_config(Run, tmp_path / "out.yaml") == cfg
    assert to_dict(cfg)["model"]["latent_dim"] == 64


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, "family: crystal\nmodel:\n  latent_dims: 64\n")
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) \['latent_dims'\]"):
        load_config(Run, path)


@pytest.mark.parametrize("override, message", [
    ("model.latent_dim=abc", "model.latent_dim: expected an integer"),
    ("model.dropout=true", "model.dropout: expected a number"),
    ("model.kind=medium", "model.kind: 'medium' is not one of"),
    ("family", "must look like key.sub=value"),
    ("family.sub=1", "'family' is not a section"),
])
def test_bad_values_are_named(tmp_path, override, message):
    path = _write(tmp_path, "family: crystal\n")
    with pytest.raises(ConfigError, match=message):
        load_config(Run, path, [override])


def test_missing_required_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'family'"):
        load_config(Run, _write(tmp_path, "model: {}\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(_write(tmp_path, "- 1\n- 2\n"))


def test_overrides_do_not_mutate_input():
    data = {"model": {"latent_dim": 1}}
    out = apply_overrides(data, ["model.latent_dim=2"])
    assert data["model"]["latent_dim"] == 1 and out["model"]["latent_dim"] == 2


@dataclass(frozen=True)
class Inner:
    size: int = 1
    rate: float | None = None

    def __post_init__(self):
        from genlowdim.config import check_fields

        check_fields(self, size="positive", rate="fraction")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)


def test_range_checks_name_the_key_by_its_path():
    """A dataclass's own ``__post_init__`` check (check_fields) reaches the user as the dotted key."""
    from genlowdim.config import FieldError, from_dict

    with pytest.raises(FieldError, match=r"Inner.size: must be at least 1, got 0"):
        Inner(size=0)
    with pytest.raises(ConfigError, match=r"^run.yaml.inner.rate: must lie strictly between 0 and 1, got 1.0$"):
        from_dict(Outer, {"inner": {"rate": 1.0}}, where="run.yaml")
    assert from_dict(Outer, {"inner": {"size": 3}}).inner == Inner(3, None)   # None: an unset optional passes


@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan"), float("inf")])
def test_train_settings_reject_a_learning_rate_that_cannot_train(value):
    from genlowdim.config import FieldError
    from genlowdim.train_settings import TrainSettings

    with pytest.raises(FieldError, match="TrainSettings.lr"):
        TrainSettings(lr=value)


def test_an_override_that_is_not_yaml_names_the_key():
    with pytest.raises(ConfigError, match=r"override 'train.lr=\[1,': the value of train.lr is not valid YAML"):
        apply_overrides({"train": {}}, ["train.lr=[1,"])


def test_every_shipped_config_passes_its_checks():
    from pathlib import Path

    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.likelihood import config as likelihood_config
    from genlowdim.lowrank import config as lowrank_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted((configs / "crystal").glob("*.yaml")):
        load_crystal_config(path)
    for name, cls in [("lowrank/molrg", lowrank_config.RunConfig),
                      ("lowrank/phase_transition", lowrank_config.SweepConfig),
                      ("lowrank/memorisation", lowrank_config.MemorisationConfig),
                      ("lowrank/digits", lowrank_config.DigitsConfig),
                      ("likelihood/circle_r10", likelihood_config.RunConfig),
                      ("likelihood/sweep", likelihood_config.SweepConfig)]:
        load_config(cls, configs / f"{name}.yaml")
