"""Crystal structure prediction and property-aimed generation: formulas and targets parse as written, the
candidates carry exactly their formula, the search keeps the best latents of its draws, rejection meets the
target on the head by construction, and the commands write what they say (bad input: one line, exit 2)."""
import json
import math

import pytest
import torch

from genlowdim.cli import main
from genlowdim.config import to_dict
from genlowdim.crystal.latents import LatentPool
from genlowdim.crystal.cdvae.csp import (CSPSettings, candidate_latents, formula_counts, formula_nll,
                                         predict_structures, propose_latents, refine_latents)
from genlowdim.crystal.tasks.csp import parse_formula
from genlowdim.crystal.tasks.targeted import PropertyTarget, parse_target, targeted_latents
from genlowdim.crystal.cdvae.training import resolve_max_atoms
from genlowdim.errors import UsageError
from genlowdim.runtime import save_checkpoint
from genlowdim.structures.io import read_structures

TINY = "configs/crystal/tiny.yaml"


@pytest.fixture(scope="module")
def checkpoint(model_cfg, tmp_path_factory):
    model, cfg = model_cfg
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(path, {"family": "crystal", "config": to_dict(cfg), "state_dict": model.state_dict(),
                           "extra_state": {"max_atoms": resolve_max_atoms(cfg), "task": "cdvae"}})
    return str(path)


def test_formula_parser_reads_the_cell_as_written():
    assert parse_formula("CsPbI3", 5).tolist() == [53, 53, 53, 55, 82]
    assert parse_formula("Sr Ti O3", 5).tolist() == [8, 8, 8, 22, 38]
    assert formula_counts(parse_formula("CsPbI3", 5))[52].item() == 3       # I: Z = 53
    with pytest.raises(UsageError, match="unknown element|not a chemical formula"):
        parse_formula("CsPbXx3", 5)
    with pytest.raises(UsageError, match="6 atoms.*at most 5"):
        parse_formula("Cs2PbI3", 5)
    with pytest.raises(UsageError, match="non-integer"):
        parse_formula("Cs0.5PbI3", 5)


def test_formula_nll_is_the_heads_log_likelihood(model_cfg):
    model, _ = model_cfg
    z = torch.randn(3, model.cfg.latent_dim, generator=torch.Generator().manual_seed(1))
    types = parse_formula("SrTiO3", 5)
    expected = (-torch.log_softmax(model.fc_num_atoms(z), -1)[:, 5]
                - torch.log_softmax(model.fc_composition(z), -1)[:, types - 1].sum(-1))
    torch.testing.assert_close(formula_nll(model, z, formula_counts(types)), expected)


def test_prior_search_keeps_the_best_of_its_draws(model_cfg):
    model, _ = model_cfg
    counts = formula_counts(parse_formula("SrTiO3", 5))
    settings = CSPSettings(method="prior", draws=64)
    z, nll = propose_latents(model, counts, 4, settings, generator=torch.Generator().manual_seed(3))
    draws = torch.randn(64, model.cfg.latent_dim, generator=torch.Generator().manual_seed(3))
    best = torch.sort(formula_nll(model, draws, counts)).values[:4]
    torch.testing.assert_close(nll, best)
    torch.testing.assert_close(formula_nll(model, z, counts), best)


def test_refinement_lowers_the_nll_and_stays_in_the_ball(model_cfg):
    model, _ = model_cfg
    counts = formula_counts(parse_formula("SrTiO3", 5))
    z0 = torch.randn(4, model.cfg.latent_dim, generator=torch.Generator().manual_seed(4))
    before = formula_nll(model, z0, counts).detach()
    z, nll = refine_latents(model, z0, counts, steps=30, lr=0.05, radius=2.0)
    assert nll.min() < before.min() and bool((nll[1:] >= nll[:-1]).all())
    assert float(z.norm(dim=-1).max()) <= 2.0 + 1e-5


def test_candidates_have_exactly_their_formula(model_cfg):
    model, cfg = model_cfg
    formulas = [parse_formula("SrTiO3", 5), parse_formula("CsPbI3", 5), parse_formula("KNbO3", 5)]
    pool = LatentPool(torch.randn(10, model.cfg.latent_dim), torch.full((10, model.cfg.latent_dim), 0.1), 3.0)
    for method in ("random", "posterior_opt"):
        settings = CSPSettings(method=method, draws=16, opt_steps=3)
        decoded, nll = predict_structures(model, cfg.sampling, formulas, 2, settings, pool=pool,
                                          sampler="ald_fast", generator=torch.Generator().manual_seed(0))
        assert decoded.num_atoms.tolist() == [5] * 6 and nll.shape == (6,)
        start = 0
        for i, n in enumerate(decoded.num_atoms.tolist()):
            got = sorted(decoded.atom_types[start:start + n].tolist())
            assert got == formulas[i // 2].tolist()
            start += n


def test_posterior_methods_need_a_pool(model_cfg):
    model, _ = model_cfg
    with pytest.raises(ValueError, match="pool"):
        candidate_latents(model, [parse_formula("SrTiO3", 5)], 1, CSPSettings(method="posterior"))
    with pytest.raises(ValueError, match="method"):
        CSPSettings(method="nope")


def test_target_parser():
    assert parse_target("heat_ref<0.5") == PropertyTarget("heat_ref", -math.inf, 0.5)
    assert parse_target("heat_ref > 1.2") == PropertyTarget("heat_ref", 1.2, math.inf)
    assert parse_target("0.2<heat_ref<0.5", "heat_ref") == PropertyTarget("heat_ref", 0.2, 0.5)
    assert parse_target("heat_ref<=-1e-1") == PropertyTarget("heat_ref", -math.inf, -0.1)
    assert str(parse_target("0.2<heat_ref<0.5")) == "0.2<heat_ref<0.5"
    for bad, why in (("heat_ref=0.5", "write NAME"), ("0.5<heat_ref<0.2", "empty"), ("<0.5", "write NAME")):
        with pytest.raises(UsageError, match=why):
            parse_target(bad)
    with pytest.raises(UsageError, match="predicts 'heat_ref', not 'band_gap'"):
        parse_target("band_gap<1", "heat_ref")


def test_margin_moves_finite_bounds_inwards():
    assert PropertyTarget("p", 0.2, 0.5).shrunk(0.1) == PropertyTarget("p", pytest.approx(0.3), pytest.approx(0.4))
    assert PropertyTarget("p", high=0.5).shrunk(0.2) == PropertyTarget("p", -math.inf, 0.3)
    assert PropertyTarget("p", low=1.0).shrunk(0.0) == PropertyTarget("p", 1.0, math.inf)
    with pytest.raises(UsageError, match="leaves nothing"):
        PropertyTarget("p", 0.2, 0.5).shrunk(0.15)


def test_target_margin_defaults_to_the_shipped_models_own():
    import argparse

    from genlowdim.crystal.commands import target_margin

    assert target_margin(argparse.Namespace(target_margin=None, model="perov_5")) == pytest.approx(0.099)
    assert target_margin(argparse.Namespace(target_margin=0.0, model="perov_5")) == 0.0
    assert target_margin(argparse.Namespace(target_margin=None, model=None, checkpoint="x.pt")) == 0.0


def test_rejection_meets_the_target_on_the_head(model_cfg):
    model, _ = model_cfg
    gen = torch.Generator().manual_seed(0)
    head = model.predict_property(torch.randn(2000, model.cfg.latent_dim, generator=gen)).detach()
    target = PropertyTarget("heat_ref", high=float(torch.quantile(head, 0.1)))
    z, met, draws = targeted_latents(model, 30, target, chunk=256, generator=torch.Generator().manual_seed(1))
    assert z.shape == (30, model.cfg.latent_dim) and met == 30 and draws % 256 == 0
    assert bool(target.met(model.predict_property(z)).all())
    impossible = PropertyTarget("heat_ref", low=1e6)
    z, met, draws = targeted_latents(model, 5, impossible, max_draws=10, generator=gen)
    assert z.shape[0] == 5 and met == 0 and draws == 50


def _run(args):
    return main(args + ["--device", "cpu"])


def test_csp_formula_writes_ranked_candidates(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "f"
    assert _run(["csp", "--checkpoint", checkpoint, "--formula", "SrTiO3", "--samples", "3", "--method", "prior",
                 "--draws", "32", "--sampler", "ald_fast", "--out", str(out)]) == 0
    got = read_structures(out / "candidates.extxyz")
    assert [i for i, _ in got] == ["SrTiO3_000", "SrTiO3_001", "SrTiO3_002"]
    assert all(s.composition.reduced_formula == "SrTiO3" and len(s) == 5 for _, s in got)
    assert sorted(p.name for p in (out / "cif").iterdir()) == [f"SrTiO3_00{j}.cif" for j in range(3)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["method"] == "prior"
    assert manifest["protocol"]["type_update"] == "composition"
    assert "warnings" not in manifest
    described = json.loads((out / "candidates.json").read_text())
    assert [c["name"] for c in described["candidates"]] == ["SrTiO3_000", "SrTiO3_001", "SrTiO3_002"]
    assert described["num_training"] == 64 and described["symprec"] == 0.1


def test_csp_refuses_elements_never_seen_in_training_unless_allowed(checkpoint, tmp_path, monkeypatch, capsys):
    """The fixture's checkpoint records no elements: they come from its config's 64 training crystals, which
    hold neither I nor Pb (read once, then from the cache)."""
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(tmp_path / "cache"))
    args = ["csp", "--checkpoint", checkpoint, "--formula", "CsPbI3", "--samples", "1", "--method", "random",
            "--sampler", "ald_fast", "--steps-per-level", "2"]
    assert _run(args + ["--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "elements I, Pb never seen" in err and "--allow-unseen-elements" in err
    assert not (tmp_path / "no").exists()
    assert list((tmp_path / "cache" / "elements").glob("*.json"))
    assert _run(args + ["--allow-unseen-elements", "--out", str(tmp_path / "yes")]) == 0
    assert "extrapolation" in capsys.readouterr().err
    warnings = json.loads((tmp_path / "yes" / "manifest.json").read_text())["warnings"]
    assert len(warnings) == 1 and "I, Pb" in warnings[0]


def test_training_elements_come_from_the_checkpoint_then_the_manifest(tmp_path):
    from genlowdim.crystal.known_elements import check_known_elements, training_elements
    from genlowdim.crystal.pretrained import PRETRAINED_DIR

    assert training_elements({"extra_state": {"elements": [38, 8, 22]}}, None) == [8, 22, 38]
    shipped = training_elements({"extra_state": {}}, None, PRETRAINED_DIR / "perov_5" / "cdvae.pt")
    assert len(shipped) == 56 and 53 not in shipped and 17 not in shipped and 82 in shipped
    assert check_known_elements([38, 22, 8, 8, 8], shipped, "x") is None
    with pytest.raises(UsageError, match="element Cl never seen"):
        check_known_elements([11, 17], shipped, "--formula 'NaCl'")


def test_csp_split_counts_compositions_and_samples_and_evaluates(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "s"
    assert _run(["csp", "--checkpoint", checkpoint, "--split", "val", "--num", "2", "--samples", "3",
                 "--method", "posterior_opt", "--draws", "16", "--opt-steps", "2", "--pool-size", "8",
                 "--batch-size", "4", "--sampler", "ald_fast", "--out", str(out)]) == 0
    truths = read_structures(out / "truth.extxyz")
    preds = read_structures(out / "predictions.extxyz")
    assert len(truths) == 2 and len(preds) == 6
    assert [i for i, _ in preds] == [t for t, _ in truths for _ in range(3)]
    for k, (_, p) in enumerate(preds):
        assert p.composition == truths[k // 3][1].composition
    assert main(["evaluate", str(out / "predictions.extxyz"), "--reference", str(out / "truth.extxyz"),
                 "--mode", "reconstruction", "--workers", "1", "--out", str(out / "eval")]) == 0
    report = json.loads((out / "eval" / "metrics.json").read_text())
    assert report["params"]["match_rate"]["candidates_per_truth"] == {"min": 3, "max": 3}
    assert report["params"]["match_rate"]["num_truths"] == 2
    one = tmp_path / "one"
    assert _run(["csp", "--checkpoint", checkpoint, "--split", "val", "--num", "2", "--method", "random",
                 "--sampler", "ald_fast", "--out", str(one)]) == 0
    assert [i for i, _ in read_structures(one / "predictions.extxyz")] == [i for i, _ in truths]


def test_sample_with_a_target_records_it(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "t"
    assert _run(["sample", "--checkpoint", checkpoint, "--target", "heat_ref>-100", "--num", "3",
                 "--sampler", "ald_fast", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "-100<heat_ref" and manifest["head_accepted"] == 3 and manifest["count"] == 3
    assert manifest["target_margin"] == 0 and manifest["head_screen"] == "-100<heat_ref"
    # a margin screens the head on the moved bound and is recorded; the crystals are judged on the target
    assert _run(["sample", "--checkpoint", checkpoint, "--target", "heat_ref>-100", "--target-margin", "50",
                 "--num", "2", "--sampler", "ald_fast", "--out", str(tmp_path / "m")]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["target_margin"] == 50 and manifest["head_screen"] == "-50<heat_ref"


def test_a_predictor_scores_each_aimed_crystal_with_its_unit(tmp_path):
    from pymatgen.core import Lattice, Structure

    from genlowdim.crystal.tasks.targeted import describe_aim, score_samples
    from genlowdim.structures.io import write_extxyz

    cell = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    write_extxyz([cell, cell, cell], tmp_path / "samples.extxyz", ids=["a", "b", "c"])
    entries = score_samples(tmp_path, parse_target("heat_ref<0.5"), lambda ss: [0.1, 0.7, 0.4][:len(ss)], "fake")
    assert entries["predictor_met"] == 2 and entries["property_unit"] == "eV/atom"
    lines = (tmp_path / "predicted_property.csv").read_text().splitlines()
    assert lines == ["id,heat_ref_predicted [eV/atom],meets heat_ref<0.5", "a,0.1,True", "b,0.7,False",
                     "c,0.4,True"]
    manifest = {"target": "heat_ref<0.5", "head_accepted": 3, "count": 3, "head_screen": "heat_ref<0.393",
                "target_margin": 0.107, "draws": 30, **entries}
    text = describe_aim(manifest, parse_target("heat_ref<0.5"))
    assert "(eV/atom)" in text and "3 of 3 passed the property head's screen" in text
    assert "2 of 3 meet heat_ref<0.5 by the property predictor" in text


def test_sample_target_with_a_shipped_model_is_scored_by_its_predictor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "t"
    assert _run(["sample", "--model", "perov_5", "--target", "heat_ref<0.5", "--target-draws", "20", "--num", "2",
                 "--batch-size", "2", "--sampler", "ald_fast", "--steps", "2", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert 0 <= manifest["predictor_met"] <= 2 and manifest["property_unit"] == "eV/atom"
    assert manifest["predictor"] == "perov_5's shipped property predictor"
    assert len((out / "predicted_property.csv").read_text().splitlines()) == 3
    assert "by the property predictor" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["csp", "--formula", "CsPbXx3"], "CsPbXx3"),
    (["csp", "--formula", "Cs2PbI3"], "at most 5"),
    (["csp", "--formula", "CsPbI3", "--num", "3"], "--num counts compositions"),
    (["csp", "--split", "train2"], "--split"),
    (["csp", "--formula", "CsPbI3", "--method", "magic"], "--method"),
    (["sample", "--target", "band_gap<1", "--num", "2"], "not 'band_gap'"),
    (["sample", "--target", "heat_ref=1", "--num", "2"], "NAME<VALUE"),
    (["sample", "--target", "0<heat_ref<1", "--target-margin", "0.6", "--num", "2"], "leaves nothing"),
    (["sample", "--target", "heat_ref<1", "--target-margin", "-1", "--num", "2"], "--target-margin"),
    (["sample", "--target-margin", "0.1", "--num", "2"], "apply with --target"),
    (["sample", "--pool-size", "100", "--num", "2"], "--pool-size applies with --latent-source posterior"),
    (["sample", "--latent-source", "posterior", "--pool-size", "-3", "--num", "2"], "--pool-size -3"),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, args, message):
    assert _run(args + ["--checkpoint", checkpoint, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_sample_with_a_target_from_the_training_posterior(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "p"
    assert _run(["sample", "--checkpoint", checkpoint, "--target", "heat_ref>-100", "--target-source", "posterior",
                 "--num", "2", "--sampler", "ald_fast", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "posterior" in manifest["method"] and manifest["head_accepted"] == 2
    assert _run(["sample", "--checkpoint", checkpoint, "--target-source", "posterior", "--num", "2",
                 "--out", str(tmp_path / "q")]) == 2


def test_sample_from_the_training_posterior_draws_around_the_pool(model_cfg, monkeypatch):
    """A pool whose crystals all sit at μ = 50·1 with σ = 0.01: every drawn z is within 0.1 of it per
    coordinate (5 σ), where N(0, I) would never be."""
    from genlowdim.crystal.cdvae.contract import CDVAECrystals

    model, cfg = model_cfg
    d = cfg.model.latent_dim
    pool = LatentPool(torch.full((3, d), 50.0), torch.full((3, d), 0.01), radius=1.0)
    crystals = CDVAECrystals(model, cfg.sampling, config=cfg, source="posterior", pool=pool)
    seen = []
    monkeypatch.setattr(CDVAECrystals, "decode", lambda self, z, generator=None: seen.append(z) or len(z))
    assert crystals.sample(7, torch.Generator().manual_seed(0)) == 7
    assert seen[0].shape == (7, d) and float((seen[0] - 50.0).abs().max()) < 0.1


def test_sample_latent_source_posterior_records_its_pool(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "p"
    args = ["sample", "--checkpoint", checkpoint, "--latent-source", "posterior", "--pool-size", "3", "--num", "2",
            "--sampler", "ald_fast", "--steps-per-level", "1", "--out", str(out)]
    assert _run(args) == 0
    assert "z around the encoded training crystals" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 2 and manifest["pool_size"] == 3
    assert manifest["protocol"]["latent_source"] == "posterior"
    assert _run(args[:6] + ["4"] + args[7:]) == 2          # another pool: not the same run, refused to resume
