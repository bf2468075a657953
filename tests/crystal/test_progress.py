"""Progress that tells time: sampling and CSP bars count crystals (candidates) over the whole run, a batch's
decode counts decoder calls of a known total (ALD), and counting never changes what is sampled."""
from types import SimpleNamespace

import pytest

from genlowdim.crystal.cdvae import sampling
from genlowdim.crystal import runs


class Recorder:
    """Stands in for a tqdm bar: what it was opened with and how far it got."""
    bars: list = []

    def __init__(self, **kw):
        self.kw, self.n, self.closed = kw, 0, False
        Recorder.bars.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


@pytest.fixture
def recorder(monkeypatch):
    Recorder.bars = []
    monkeypatch.setattr(sampling, "progress", lambda **kw: Recorder(**kw))
    monkeypatch.setattr(runs, "progress", lambda **kw: Recorder(**kw))
    return Recorder


def test_a_decode_counts_its_decoder_calls_against_the_ald_total(recorder):
    spec = SimpleNamespace(method="ald", steps_each=100)
    with sampling._calls_bar(spec, 50, 10, 3) as ticking:
        denoise = ticking(lambda x, sigma: x + sigma)
        assert [denoise(1, 2) for _ in range(7)] == [3] * 7
    bar, = recorder.bars
    assert bar.kw["total"] == 500 and bar.kw["unit"] == "decoder call" and bar.n == 7 and bar.closed
    with sampling._calls_bar(SimpleNamespace(method="ode_heun"), 50, 10, 3):
        pass
    assert recorder.bars[-1].kw["total"] is None   # unknown ahead: a count and a rate, no ETA


def test_batches_advance_a_bar_of_crystals(recorder):
    run = SimpleNamespace(first=True, world=1, rank=0, writer=SimpleNamespace(done=lambda k: k == 1))
    got = list(runs.BatchRun.pending(run, 3, "sampling", items=7, unit="crystal"))
    bar, = recorder.bars
    assert got == [0, 2] and bar.kw["total"] == 7 and bar.kw["unit"] == "crystal" and bar.n == 7 and bar.closed
