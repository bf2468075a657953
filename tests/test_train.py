"""The training engine: resume reproduces the trajectory, NaN guard, checkpoints, DDP equivalence."""
from __future__ import annotations

import csv
import math
import os
import socket

import pytest
import torch
import yaml
from torch import nn

from genlowdim.runtime import load_checkpoint
from genlowdim.train import TrainSettings, TrainingDiverged, epoch_order, fit

torch.set_num_threads(1)


def _data(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=gen)
    return [torch.cat([xi, yi.view(1)]) for xi, yi in zip(x, y)]


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, batch, noise=None):
        x = batch[:, :3] if noise is None else batch[:, :3] + noise
        return ((self.net(x).squeeze(-1) - batch[:, 3]) ** 2).mean()


def noisy_loss(model, batch, ctx):
    # training noise drawn from the checkpointed generator, as model families do
    noise = 0.1 * torch.randn(batch.shape[0], 3, generator=ctx.generator)
    loss = model(batch, noise)
    return loss, {"mse": loss.item()}


def _settings(**kw):
    base = dict(epochs=4, batch_size=8, lr=1e-2, log_every=1, checkpoint_every=5, seed=3,
                grad_clip_value=None)
    base.update(kw)
    return TrainSettings(**base)


def _losses(out):
    with open(out / "log.csv") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(10, 1, 2), epoch_order(10, 1, 2)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10))
    assert not torch.equal(epoch_order(10, 1, 3), a)


def test_resume_after_crash_follows_uninterrupted_trajectory(tmp_path):
    data = _data()
    full = fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(), out_dir=tmp_path / "a",
               family="toy", config={})
    assert full.steps == 20  # 4 epochs x 5 batches

    def crashing_loss(model, batch, ctx):
        if ctx.step == 13:
            raise KeyboardInterrupt  # dies between checkpoints (last one at step 10)
        return noisy_loss(model, batch, ctx)

    with pytest.raises(KeyboardInterrupt):
        fit(Regressor(), data, loss_fn=crashing_loss, settings=_settings(), out_dir=tmp_path / "b",
            family="toy", config={})
    assert load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["step"] == 10
    fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(), out_dir=tmp_path / "b",
        family="toy", config={}, resume=True)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [s for s, _ in b] == list(range(1, 21))
    for (_, la), (_, lb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-6, abs=1e-9)
    wa = load_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    wb = load_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key])


def test_resume_may_extend_the_budget_but_not_change_the_run(tmp_path):
    """A resumed run may get more steps; another model or learning rate stops before any weight is loaded,
    naming the keys (the engine's check; the crystal CLI runs the same before loading data)."""
    from genlowdim.config import ConfigError

    config = {"model": {"width": 8}, "train": {"max_steps": 5, "lr": 0.01}}
    fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=5), out_dir=tmp_path,
        family="toy", config=config)
    longer = {"model": {"width": 8}, "train": {"max_steps": 10, "lr": 0.01}}
    assert fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=10), out_dir=tmp_path,
               family="toy", config=longer, resume=True).steps == 10
    other = {"model": {"width": 16}, "train": {"max_steps": 15, "lr": 0.1}}
    with pytest.raises(ConfigError, match=r"model.width: 8 -> 16; train.lr: 0.01 -> 0.1\)"):
        fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=15), out_dir=tmp_path,
            family="toy", config=other, resume=True)


def test_warm_start_takes_weights_and_ema_but_not_the_step_count(tmp_path):
    """``init_from``: a new run begins at the other run's weights (its first loss is computed with them) and
    its EMA, with its own step count; a model of another shape is named in the error."""
    data = _data()
    fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(ema_decay=0.9), out_dir=tmp_path / "a",
        family="toy", config={})
    first = load_checkpoint(tmp_path / "a" / "last.pt")
    seen = []

    def recording_loss(model, batch, ctx):
        if ctx.step == 0:
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return noisy_loss(model, batch, ctx)

    result = fit(Regressor(), data, loss_fn=recording_loss, out_dir=tmp_path / "b", family="toy", config={},
                 settings=_settings(ema_decay=0.9, max_steps=1, init_from=str(tmp_path / "a" / "last.pt")))
    assert result.steps == 1
    for key, value in first["state_dict"].items():
        torch.testing.assert_close(seen[0][key], value, rtol=0, atol=0)
    after = load_checkpoint(tmp_path / "b" / "last.pt")
    for key, value in first["ema_state_dict"].items():   # one EMA step from A's average, not from B's weights
        expected = 0.9 * value + 0.1 * after["state_dict"][key]
        torch.testing.assert_close(after["ema_state_dict"][key], expected)

    class Wider(Regressor):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))

    with pytest.raises(ValueError, match="init_from: .*last.pt's weights do not fit"):
        fit(Wider(), data, loss_fn=noisy_loss, out_dir=tmp_path / "c", family="toy", config={},
            settings=_settings(init_from=str(tmp_path / "a" / "last.pt")))


def test_existing_run_is_not_overwritten(tmp_path):
    data = _data()
    fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(epochs=1), out_dir=tmp_path,
        family="toy", config={})
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(epochs=1), out_dir=tmp_path,
            family="toy", config={})


def test_nan_steps_are_skipped_and_counted(tmp_path):
    data = _data()

    def sometimes_nan(model, batch, ctx):
        loss, logs = noisy_loss(model, batch, ctx)
        return (loss * float("nan") if ctx.step in (2, 7) else loss), logs

    result = fit(Regressor(), data, loss_fn=sometimes_nan, settings=_settings(), out_dir=tmp_path,
                 family="toy", config={})
    assert result.skipped_steps == 2 and result.steps == 20
    weights = load_checkpoint(tmp_path / "last.pt")["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_divergence_stops_with_clear_error(tmp_path):
    def always_nan(model, batch, ctx):
        return model(batch) * float("inf"), {}

    with pytest.raises(TrainingDiverged, match="consecutive steps"):
        fit(Regressor(), _data(), loss_fn=always_nan, settings=_settings(max_bad_steps=3),
            out_dir=tmp_path, family="toy", config={})


def test_validation_best_checkpoint_ema_and_plot(tmp_path):
    data = _data()
    val_data = torch.stack(_data(seed=1))
    calls = []

    def val_fn(model):
        calls.append(1)
        return {"val_loss": float(model(val_data))}

    result = fit(Regressor(), data, loss_fn=noisy_loss, val_fn=val_fn,
                 settings=_settings(ema_decay=0.9, epochs=6), out_dir=tmp_path, family="toy",
                 config={"x": 1}, extra_state={"scale": torch.tensor([2.0])})
    assert len(calls) == 6
    best = load_checkpoint(tmp_path / "best.pt", family="toy")
    assert best["config"] == {"x": 1} and float(best["extra_state"]["scale"]) == 2.0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"x": 1}
    assert best["ema_state_dict"] is not None
    last = load_checkpoint(tmp_path / "last.pt", family="toy")
    assert 0 < best["train_state"]["elapsed_s"] <= last["train_state"]["elapsed_s"]   # wall time recorded
    assert result.best_val == pytest.approx(min(
        float(r["val_loss"]) for r in csv.DictReader(open(tmp_path / "val.csv"))))
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_step_budget_and_empty_set(tmp_path):
    result = fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=7),
                 out_dir=tmp_path / "a", family="toy", config={})
    assert result.steps == 7 and result.stopped_because == "budget"
    with pytest.raises(ValueError, match="empty"):
        fit(Regressor(), [], loss_fn=noisy_loss, settings=_settings(), out_dir=tmp_path / "b",
            family="toy", config={})


def test_one_bar_counts_global_steps_of_the_budget_across_a_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GENLOWDIM_QUIET", raising=False)
    fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=7), out_dir=tmp_path / "a",
        family="toy", config={})
    err = capsys.readouterr().err   # off a terminal: the closing line, with the step of the budget
    assert "toy training" in err and "7/7" in err and "epoch" not in err.split("toy training")[0]
    fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(max_steps=12), out_dir=tmp_path / "a",
        family="toy", config={}, resume=True)
    assert "12/12" in capsys.readouterr().err
    fit(Regressor(), _data(), loss_fn=noisy_loss, settings=_settings(), out_dir=tmp_path / "b",
        family="toy", config={})
    assert "20/20" in capsys.readouterr().err   # no max_steps: 4 epochs of 5 batches


def test_cosine_schedule_follows_the_step_budget(tmp_path):
    # 40 items in batches of 8 = 5 steps per epoch; 4 epochs = 20 steps, so max_steps = 12 is the binding budget
    settings = _settings(max_steps=12, lr=1e-2, min_lr=1e-4, lr_schedule="cosine")
    fit(Regressor(), _data(), loss_fn=noisy_loss, settings=settings, out_dir=tmp_path, family="toy", config={})
    with open(tmp_path / "log.csv") as fh:
        rows = [(int(r["step"]), float(r["lr"])) for r in csv.DictReader(fh)]
    assert [k for k, _ in rows] == list(range(1, 13))
    for k, lr in rows:   # the lr logged at step k is the one its update used: fraction (k - 1) / 12
        expected = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * (k - 1) / 12))
        assert lr == pytest.approx(expected, rel=1e-9)
    assert rows[0][1] == pytest.approx(1e-2) and rows[-1][1] < 3e-4


def test_in_memory_run_writes_nothing_and_a_tensor_set_trains_like_its_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = _data()
    on_disk = fit(Regressor(), rows, loss_fn=noisy_loss, settings=_settings(), out_dir=tmp_path / "run",
                  family="toy", config={})
    in_memory = fit(Regressor(), torch.stack(rows), loss_fn=noisy_loss, settings=_settings())
    assert in_memory.out_dir is None and in_memory.last_checkpoint is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]   # nothing written by the in-memory run
    # same seed, same batches (the tensor's rows are the items): the same loss trajectory
    assert [r["loss"] for r in in_memory.history] == [loss for _, loss in _losses(tmp_path / "run")]
    assert in_memory.steps == on_disk.steps == 20
    with pytest.raises(ValueError, match="resume needs an output directory"):
        fit(Regressor(), rows, loss_fn=noisy_loss, settings=_settings(), resume=True)


def test_batches_drawn_with_replacement_are_seeded_and_full_size():
    order = epoch_order(5, 1, 0, batch_size=8, draw="replacement")
    assert order.shape == (8,) and set(order.tolist()) <= set(range(5))
    assert torch.equal(order, epoch_order(5, 1, 0, batch_size=8, draw="replacement"))
    assert epoch_order(20, 1, 0, batch_size=8, draw="replacement").shape == (24,)   # ceil(20/8) batches
    sizes = []
    fit(Regressor(), torch.stack(_data(n=5)), settings=_settings(batch_size=8, batch_draw="replacement",
                                                                  max_steps=3, epochs=10),
        loss_fn=lambda model, batch, ctx: (sizes.append(len(batch)), noisy_loss(model, batch, ctx))[1])
    assert sizes == [8, 8, 8]


def test_post_step_hook_and_parameter_groups_with_cosine(tmp_path):
    calls = []
    model = Regressor()

    def groups(m):   # the last layer at 10 × lr
        return [{"params": list(m.net[0].parameters())}, {"params": list(m.net[2].parameters()), "lr": 0.1}]

    result = fit(model, torch.stack(_data()), loss_fn=noisy_loss,
                 settings=_settings(max_steps=6, lr=1e-2, min_lr=0.0, lr_schedule="cosine"),
                 post_step=lambda m: calls.append(m is model), param_groups=groups)
    assert calls == [True] * 6 and result.steps == 6
    # each group anneals from its own initial lr; the first group's lr is the one logged
    assert result.history[-1]["lr"] == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi * 5 / 6)))


def test_time_budget_stops_and_counts_across_sessions(tmp_path):
    data = _data()
    first = fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(max_minutes=1e-9), out_dir=tmp_path,
                family="toy", config={})
    assert first.stopped_because == "budget" and first.steps == 0
    spent = load_checkpoint(tmp_path / "last.pt", family="toy")["train_state"]["elapsed_s"]
    assert spent > 0
    # a resumed session with a larger budget continues, and its clock adds to the first session's
    second = fit(Regressor(), data, loss_fn=noisy_loss, settings=_settings(max_minutes=10.0), out_dir=tmp_path,
                 family="toy", config={}, resume=True)
    assert second.stopped_because == "epochs" and second.steps == 20
    assert load_checkpoint(tmp_path / "last.pt", family="toy")["train_state"]["elapsed_s"] > spent


def test_unknown_lr_schedule_is_rejected():
    from genlowdim.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="lr_schedule"):
        from_dict(TrainSettings, {"lr_schedule": "linear"}, where="train")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deterministic_loss(model, batch, ctx):
    loss = model(batch)
    return loss, {}


def _ddp_worker(rank, world, port, out, data):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), GENLOWDIM_QUIET="1")
    torch.set_num_threads(1)
    fit(Regressor(), data, loss_fn=deterministic_loss, settings=_settings(epochs=2, checkpoint_every=100),
        out_dir=out, family="toy", config={})
    # each rank reports its own parameters so the test can compare ranks
    model_state = load_checkpoint(os.path.join(out, "last.pt"))["state_dict"]
    torch.save(model_state, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_match_single_process(tmp_path):
    data = _data(n=32)
    single = fit(Regressor(), data, loss_fn=deterministic_loss,
                 settings=_settings(epochs=2, checkpoint_every=100), out_dir=tmp_path / "single",
                 family="toy", config={})
    assert single.steps == 8
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), data),
                                nprocs=2, join=True)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ref = load_checkpoint(tmp_path / "single" / "last.pt")["state_dict"]
    for key in ref:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][key], ref[key], rtol=1e-5, atol=1e-6)
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    for (_, la), (_, lb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-5)


@pytest.mark.parametrize("low, high, fewest", [(3.2, 8.7, 4), (0.02, 40.0, 4), (1e-4, 50.0, 5)])
def test_loss_axis_labels_several_ticks_whatever_the_range(low, high, fewest):
    # symlog labels only decades: a loss curve between 3.2 and 8.7 had a single tick label
    from matplotlib.figure import Figure

    from genlowdim.train_logs import loss_axis

    ax = Figure().subplots()
    values = [high * (low / high) ** (k / 49) for k in range(50)]
    ax.plot(range(50), values)
    loss_axis(ax.yaxis, values)
    lo, hi = ax.get_ylim()
    shown = [v for v in ax.yaxis.get_majorticklocs() if lo <= v <= hi]
    labels = [ax.yaxis.get_major_formatter()(v) for v in shown]
    assert fewest <= len(shown) <= 12 and all(labels) and len(set(labels)) == len(labels)
    assert [float(t) for t in labels] == pytest.approx(shown)   # plain numbers, e.g. "0.05", "20"


def test_loss_axis_falls_back_to_symlog_for_negative_losses():
    from matplotlib.figure import Figure

    from genlowdim.train_logs import loss_axis

    ax = Figure().subplots()
    loss_axis(ax.yaxis, [3.0, -1.5, 0.2])
    assert ax.get_yscale() == "symlog"
