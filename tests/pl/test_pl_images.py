"""Image comparison with baseline PNGs in tests/_images/ (see conftest.py for how to regenerate them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _pl_data import ablation_frame, cv_frame, history_list

import genedml as gd


def test_image_spatial(pred_sdata, check_image):
    check_image(gd.pl.spatial(pred_sdata, genes=["GNAS", "FASN"], sections=["S1", "S2"], max_px=300), "spatial")


def test_image_spatial_he_only(fresh_sdata, check_image):
    table = fresh_sdata.tables["table"]
    del table.layers["predicted_observed"]
    s2 = np.flatnonzero(table.obs["section"] == "S2")
    table.layers["predicted"][s2[:4]] = np.nan  # four spots without a prediction are drawn grey
    check_image(gd.pl.spatial(fresh_sdata, genes="ERBB2", sections="S2", max_px=300), "spatial_he_only")


def test_image_spatial_residual(pred_sdata, check_image):
    # measured and predicted on one scale in units (the default), the residual on a diverging scale centred at 0
    check_image(gd.pl.spatial(pred_sdata, genes="FASN", sections="S1", residual=True, max_px=300), "spatial_residual")


def test_image_spots_categorical(fresh_sdata, check_image):
    # one colour per category in every section, a legend entry per category (Leiden-like labels)
    table = fresh_sdata.tables["table"]
    table.obs["leiden"] = pd.Categorical((np.arange(table.n_obs) % 4).astype(str))
    check_image(gd.pl.spots(fresh_sdata, color="leiden", max_px=300), "spots_categorical")


def test_image_cv_summary(check_image):
    check_image(gd.pl.cv_summary(cv_frame()), "cv_summary")


def test_image_ablation(check_image):
    check_image(gd.pl.ablation(ablation_frame()), "ablation")


def test_image_history(check_image):
    check_image(gd.pl.history(history_list()), "history")


def test_image_gene_scores(check_image):
    rng = np.random.default_rng(0)
    pcc = pd.Series(np.clip(rng.normal(0.25, 0.15, 120), -0.3, 0.9), index=[f"GENE{i}" for i in range(120)])
    check_image(gd.pl.gene_scores(pcc, top=8), "gene_scores")


def test_image_spots(pred_sdata, check_image):
    # each panel zoomed to its spots, circles at their true size, one colour bar for the gene
    check_image(gd.pl.spots(pred_sdata, color="GNAS", max_px=300), "spots")


def test_image_predicted_vs_observed(pred_sdata, check_image):
    # identity line through the shared range, r and n in the title, equal axes
    check_image(gd.pl.predicted_vs_observed(pred_sdata, gene="GNAS"), "predicted_vs_observed")
