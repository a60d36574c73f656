"""``genedml predict-slides``: a cohort of slide files written here, through a Dask scheduler address and in-process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import spatialdata
import tifffile

import genedml as gd
from genedml._cli import main

TIFF = dict(tile=(256, 256), resolution=(5e3, 5e3), resolutionunit="CENTIMETER", compression="zlib")  # 2 µm/px


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A tiny saved model and two small slides (a pale background around a square of synthetic tissue)."""
    root = tmp_path_factory.mktemp("cli-slides")
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    fit = dict(n_top_genes=5, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1, progress=False)
    model_path = gd.tl.fit(sdata, **fit).save(root / "model.pt")
    paths = []
    for name, (y, x) in {"a": (300, 300), "b": (400, 500)}.items():
        img = np.full((480, 480, 3), 242, np.uint8)
        img[80:400, 80:400] = sdata.images["S1_hne"].data.compute().transpose(1, 2, 0)[y : y + 320, x : x + 320]
        paths.append(root / f"{name}.tif")
        tifffile.imwrite(paths[-1], img, **TIFF)
    return model_path, paths


def test_cli_predict_slides_round_trip(cohort, tmp_path, capsys):
    import torch
    from distributed import LocalCluster

    model_path, paths = cohort
    out = tmp_path / "out"
    listing = tmp_path / "slides.txt"
    listing.write_text(f"# the cohort\n{paths[1]}\n\n")
    threads = torch.get_num_threads()
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0", silence_logs=40) as cluster:
        argv = [
            "predict-slides",
            "--model",
            str(model_path),
            "--out",
            str(out),
            "--scheduler",
            cluster.scheduler_address,
        ]
        assert main([*argv, "--no-progress", str(paths[0]), "--slides-from", str(listing)]) == 0, capsys.readouterr()
    torch.set_num_threads(threads)  # the in-process worker set this process's torch threads
    text = capsys.readouterr().out
    assert "2 done, 0 skipped, 0 failed" in text and "manifest.csv" in text
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert manifest["status"].tolist() == ["done", "done"]
    table = spatialdata.read_zarr(out / "a.zarr")["table"]
    assert table.layers["predicted"].shape == (manifest["n_spots"][0], 5)
    # again, in this process: both skipped; a corrupt file fails (exit status 1) and is listed with its error
    bad = tmp_path / "c.tif"
    bad.write_bytes(b"not a tiff")
    argv = ["predict-slides", "--model", str(model_path), "--out", str(out), "--scheduler", "sync", "--no-progress"]
    assert main([*argv, str(paths[0]), str(paths[1]), str(bad)]) == 1
    text = capsys.readouterr().out
    assert "2 skipped, 1 failed" in text and "tiffslide cannot read" in text


def test_cli_predict_slides_bad_arguments(cohort, tmp_path, capsys):
    model_path, paths = cohort
    base = ["predict-slides", "--model", str(model_path), "--scheduler", "sync", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "o")]) == 2
    assert "no slides" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), str(tmp_path / "missing.svs")]) == 2
    assert "missing.svs" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o"), "--slides-from", str(tmp_path / "none.txt")]) == 2
    assert "`--slides-from`" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*base, "--out", str(tmp_path / "file"), str(paths[0])]) == 2
    assert "is not a folder" in capsys.readouterr().err
    argv = ["predict-slides", "--model", str(model_path), "--out", str(tmp_path / "o"), "--n-workers", "0"]
    assert main([*argv, str(paths[0])]) == 2
    assert "`n_workers` must be a positive integer" in capsys.readouterr().err
    assert (
        main(["predict-slides", "--model", str(tmp_path / "no.pt"), "--out", str(tmp_path / "o"), str(paths[0])]) == 2
    )
    assert "`--model`" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
