"""Progress that tells the truth: the embedding bar knows its total before the work starts (and never grows), output
that is not a terminal gets plain periodic lines instead of redrawn bars, and ``progress=False`` silences all."""

from __future__ import annotations

from typing import ClassVar

import pytest
from tqdm.std import tqdm

import genedml as gd
from genedml import _utils

EMBED = dict(encoder="test_resnet", pretrained=False, target_px=32)


class RecordingBar(tqdm):
    """A real tqdm bar (to a throw-away stream) that records every total it is shown with."""

    made: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        import io

        kwargs["file"] = io.StringIO()
        super().__init__(*args, **kwargs)
        self.totals = [self.total]
        RecordingBar.made.append(self)

    def refresh(self, *args, **kwargs):
        self.totals.append(self.total)
        return super().refresh(*args, **kwargs)


@pytest.fixture
def recording(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(_utils, "tqdm_class", lambda: RecordingBar)
    return RecordingBar.made


def test_embedding_total_is_known_before_the_work_and_never_grows(recording):
    sdata = gd.datasets.synthetic(preset="tiny")
    gd.tl.embed(sdata, **EMBED, progress=True)
    (bar,) = recording
    first = bar.totals[0]
    n_spots = sdata["table"].n_obs
    assert first > n_spots  # target windows plus the neighbour tiles that are not target windows
    assert bar.n == first and bar.totals == [first] * len(bar.totals)  # exact from the start: no growth, no shrink
    # a second run finds every section cached: the total drops to the work left (none), it never grows
    recording.clear()
    gd.tl.embed(sdata, **EMBED, progress=True)
    (bar,) = recording
    assert bar.totals[0] == first and bar.n == 0 and bar.totals[-1] == 0
    assert all(b <= a for a, b in zip(bar.totals, bar.totals[1:]))


def test_total_counts_dihedral_variants(recording):
    sdata = gd.datasets.synthetic(preset="tiny")
    gd.tl.embed(sdata, **EMBED, scales="target", dihedral=True, progress=True)
    (bar,) = recording
    assert bar.totals[0] == bar.n == 8 * sdata["table"].n_obs


def test_not_a_terminal_gives_plain_lines(capsys):
    assert _utils.tqdm_class().__name__ == "LogBar"  # pytest's captured stderr is no terminal
    sdata = gd.datasets.synthetic(preset="tiny")
    gd.tl.fit(sdata, n_top_genes=10, config="cpu", max_epochs=2, patience=None, batch_size=32, progress=True, **EMBED)
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err  # no redrawn bar, no cursor movement
    lines = [ln for ln in err.splitlines() if ln.startswith(("embed", "training"))]
    embed = [ln for ln in lines if ln.startswith("embed test_resnet: ")]
    assert embed and embed[-1].split()[2].split("/")[0] == embed[-1].split()[2].split("/")[1]  # ends at its total
    assert any(ln.startswith("training: epoch 2/2 (") for ln in lines), err
    assert len(lines) <= 6  # a few lines, not one per batch


def test_progress_false_silences_everything(capsys):
    sdata = gd.datasets.synthetic(preset="tiny")
    model = gd.tl.fit(sdata, n_top_genes=10, config="cpu", max_epochs=1, batch_size=32, progress=False, **EMBED)
    gd.tl.predict(sdata, model, progress=False)
    captured = capsys.readouterr()
    assert "embed" not in captured.err and "epoch" not in captured.err.lower() and captured.out == ""


def test_cross_validate_shows_progress_inside_each_task(capsys):
    sdata = gd.datasets.synthetic(preset="tiny")
    gd.tl.cross_validate(
        sdata, methods=["mean", "gene_dml"], n_top_genes=10, config="cpu",
        train_config={"max_epochs": 1, "batch_size": 32}, progress=True, **EMBED,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "\r" not in err
    assert any(ln.startswith("cross-validation") and "/4 " in ln for ln in err.splitlines()), err  # 2 methods × 2 folds
    assert err.count("training: epoch 1/1") == 2, err  # gene_dml's epochs in each of the 2 folds
