"""gd.pl.cv_summary, gd.pl.ablation and gd.pl.history: statistics drawn, inputs accepted, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _pl_data import ablation_frame, cv_frame, history_list

import genedml as gd


def _error_segments(ax) -> np.ndarray:
    from matplotlib.container import ErrorbarContainer

    (eb,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return np.asarray(eb.lines[2][0].get_segments())


def _fold_stats(df: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    per_fold = df.groupby(["method", "fold"])[metric].mean()
    return per_fold.groupby("method").mean(), per_fold.groupby("method").std(ddof=1)


def test_cv_summary_bars_are_fold_means_with_fold_sd():
    from matplotlib.figure import Figure

    df = cv_frame()
    fig = gd.pl.cv_summary(df)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["PCC(A) ↑", "PCC(H) ↑", "MSE ↓", "MAE ↓"]
    methods = ["Gene-DML", "TRIPLEX", "ST-Net"]
    for ax, metric in zip(fig.axes, ["pcc_a", "pcc_h", "mse", "mae"]):
        mean, sd = _fold_stats(df, metric)
        np.testing.assert_allclose([p.get_height() for p in ax.patches], mean[methods].to_numpy())
        segs = _error_segments(ax)
        np.testing.assert_allclose([(s[1, 1] - s[0, 1]) / 2 for s in segs], sd[methods].to_numpy())
        assert [t.get_text() for t in ax.get_xticklabels()] == methods
    assert "4 folds" in fig.get_suptitle()


def test_cv_summary_best_in_bold_and_method_order():
    fig = gd.pl.cv_summary(cv_frame(), metrics=["pcc_a", "mse"], methods=["ST-Net", "Gene-DML"])
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["ST-Net", "Gene-DML"]
        bold = [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"]
        assert len(bold) == 1
        assert float(bold[0]) == pytest.approx(ax.patches[1].get_height(), abs=5e-4)  # Gene-DML is best in both


def test_cv_summary_single_fold_has_no_error_bars():
    df = cv_frame().query("fold == 0")
    ax = gd.pl.cv_summary(df, metrics="pcc_a").axes[0]
    segs = _error_segments(ax)
    assert all(s[1, 1] == s[0, 1] for s in segs)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (pd.DataFrame(columns=["method", "fold", "pcc_a"]), {}, ValueError, "`data` is empty"),
        ("table.csv", {}, TypeError, "pandas DataFrame"),
        (cv_frame(), {"metrics": ["pcc_a", "ssim"]}, KeyError, "`metrics`.*ssim"),
        (cv_frame(), {"metrics": []}, ValueError, "`metrics` is empty"),
        (cv_frame().drop(columns="fold"), {}, KeyError, "`data`.*fold"),
        (cv_frame(), {"methods": ["HisToGene"]}, KeyError, "`methods`.*HisToGene"),
    ],
)
def test_cv_summary_bad_input(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        gd.pl.cv_summary(data, **kwargs)


def test_ablation_reference_first_and_deltas():
    df = ablation_frame()
    fig = gd.pl.ablation(df, metrics=["pcc_a", "mse"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "full (reference)",
        "w/o instance level",
        "w/o global scale",
        "w/o instance group",
        "w/o feature grouping",
        "plain",
    ]
    mean, _ = _fold_stats(df, "pcc_a")
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == f"{mean['full']:.3f}"
    assert texts[-1] == f"{mean['plain'] - mean['full']:+.3f}"
    (ref_line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert ref_line.get_xdata()[0] == pytest.approx(mean["full"])
    with pytest.raises(KeyError, match="`reference`='baseline'"):
        gd.pl.ablation(df, reference="baseline")
    assert len(gd.pl.ablation(df, reference=None, metrics="mae").axes) == 1


def test_history_panels_from_every_input_form():
    from matplotlib.figure import Figure

    hist = history_list()

    class Model:
        history_ = hist

    forms = [hist, pd.DataFrame(hist), pd.DataFrame(hist).to_dict(orient="list"), Model()]
    for data in forms:
        fig = gd.pl.history(data)
        assert isinstance(fig, Figure)
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[:4] == ["training losses", "validation", "clustering accuracy", "learning rate"]
    losses = fig.axes[0]
    labels = [t.get_text() for t in losses.get_legend().get_texts()]
    assert labels[0] == "total" and len(labels) == 7  # every train_* loss term, the total first
    best = int(np.argmax([r["val_pcc"] for r in hist]))
    assert f"best epoch {best}" in fig.get_suptitle()


def test_history_skips_epochs_without_validation_and_ignores_text():
    hist = [{"epoch": e, "train_loss": 1.0 / (e + 1), "note": "x"} for e in range(6)]
    for e in (1, 3, 5):
        hist[e]["val_pcc"] = 0.1 * e
    fig = gd.pl.history(hist)
    assert [ax.get_title() for ax in fig.axes] == ["training losses", "validation"]
    (val_line,) = fig.axes[1].get_lines()[:1]
    np.testing.assert_array_equal(val_line.get_xdata(), [1, 3, 5])
    assert "best epoch 5" in fig.get_suptitle()


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ([], ValueError, "empty history"),
        (pd.DataFrame(), ValueError, "empty history"),
        ("history.json", TypeError, "list of dicts"),
        ([{"epoch": 0, "note": "x"}], ValueError, "no numeric training metric"),
    ],
)
def test_history_bad_input(data, error, match):
    with pytest.raises(error, match=match):
        gd.pl.history(data)
