"""`gd.tl.predict_slides`: a cohort of small slide files written here, on Dask distributed and in this process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import spatialdata
import tifffile

import genedml as gd

TIFF = dict(tile=(256, 256), resolution=(5e3, 5e3), resolutionunit="CENTIMETER", compression="zlib")  # 2 µm/px
CROPS = [("S1", 300, 300), ("S1", 400, 500), ("S2", 200, 400), ("S2", 300, 500)]


def write_slides(sdata, folder: Path, crops=CROPS) -> list[Path]:
    """Pale 480 px slides (2 µm/px), each with a 320 px square of synthetic H&E tissue from ``sdata``."""
    paths = []
    for i, (sec, y, x) in enumerate(crops):
        img = np.full((480, 480, 3), 242, np.uint8)
        img[80:400, 80:400] = sdata.images[f"{sec}_hne"].data.compute().transpose(1, 2, 0)[y : y + 320, x : x + 320]
        paths.append(folder / f"slide{i}.tif")
        tifffile.imwrite(paths[-1], img, **TIFF)
    return paths


def predicted(path) -> np.ndarray:
    return np.asarray(spatialdata.read_zarr(path)["table"].layers["predicted"])


@pytest.fixture(scope="module")
def cohort(_trained, tmp_path_factory):
    sdata, model = _trained
    return write_slides(sdata, tmp_path_factory.mktemp("slides")), model


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One 2-worker LocalCluster for the module; its workers keep their features in a temporary store."""
    from distributed import Client, LocalCluster

    env = {"GENEDML_CACHEDIR": str(tmp_path_factory.mktemp("worker-cache"))}
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=40, env=env
    )
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def runs(cohort, client, tmp_path_factory):
    """The 4-slide cohort predicted in this process, on a new 1-worker LocalCluster and on the 2-worker client."""
    paths, model = cohort
    root = tmp_path_factory.mktemp("runs")
    kw = {"sync": dict(scheduler="sync"), "local1": dict(n_workers=1), "client2": dict(scheduler=client)}
    out = {}
    for name, args in kw.items():
        gd.settings.cachedir = root / f"{name}-features"  # every run computes its features afresh (no cache hit)
        out[name] = gd.tl.predict_slides(paths, model, out_dir=root / name, progress=False, **args)
    return out


def test_local_cluster_writes_one_store_per_slide(cohort, runs):
    paths, model = cohort
    df = runs["local1"]
    assert df["slide"].tolist() == [str(p.resolve()) for p in paths]
    assert df["status"].tolist() == ["done"] * 4 and (df["error"] == "").all()
    assert (df["n_spots"] > 0).all() and (df["seconds"] > 0).all()
    assert (df["model_hash"] == model.model_hash).all()
    out = Path(df["output"][0])
    assert out.name == "slide0.zarr"
    res = spatialdata.read_zarr(out)
    assert not res.images and list(res.shapes) == ["slide0_spots"]
    table = res["table"]
    assert table.n_obs == df["n_spots"][0] == len(res.shapes["slide0_spots"])
    assert list(table.var_names) == list(model.genes_) and table.var["genedml_predicted"].all()
    pred = table.layers["predicted"]
    assert pred.dtype == np.float32 and pred.shape == (table.n_obs, len(model.genes_)) and np.isfinite(pred).all()
    slide = table.uns["genedml"]["slide"]
    assert slide["path"] == str(paths[0].resolve()) and int(slide["size"]) == paths[0].stat().st_size
    assert slide["sha256"] == df["sha256"][0] and len(slide["sha256"]) == 64
    assert table.uns["genedml"]["predicted"]["model_hash"] == model.model_hash
    # the manifest on disk is the returned one; nothing is left behind but the stores, the model and the manifest
    disk = pd.read_csv(out.parent / "manifest.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(disk[["slide", "status", "n_spots"]], df[["slide", "status", "n_spots"]])
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == [f".genedml-model-{model.model_hash}.pt", "manifest.csv"] + [f"slide{i}.zarr" for i in range(4)]


def test_identical_in_this_process_and_on_one_or_two_workers(runs):
    for i in range(4):
        ref = predicted(runs["sync"]["output"][i])
        for name in ("local1", "client2"):
            np.testing.assert_array_equal(predicted(runs[name]["output"][i]), ref, err_msg=f"{name} slide{i}")
    for name in ("local1", "client2"):
        assert runs[name]["n_spots"].tolist() == runs["sync"]["n_spots"].tolist()


def test_resume_skips_done_slides(cohort, client, tmp_path):
    paths, model = cohort
    first = gd.tl.predict_slides(paths[:2], model, out_dir=tmp_path, scheduler=client, progress=False)
    stamps = [os.stat(p).st_mtime_ns for p in first["output"]]
    again = gd.tl.predict_slides(paths[:3], model, out_dir=tmp_path, scheduler=client, progress=False)
    assert again["status"].tolist() == ["skipped", "skipped", "done"]
    assert [os.stat(p).st_mtime_ns for p in again["output"][:2]] == stamps
    assert again["n_spots"].tolist()[:2] == first["n_spots"].tolist()
    # other options: the outputs are stale, refused before any work, recomputed with overwrite=True
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gd.tl.predict_slides(paths[:1], model, out_dir=tmp_path, scheduler="sync", key_added="again")
    assert os.stat(first["output"][0]).st_mtime_ns == stamps[0]
    redo = gd.tl.predict_slides(
        paths[:1], model, out_dir=tmp_path, scheduler="sync", key_added="again", overwrite=True, progress=False
    )
    assert redo["status"].tolist() == ["done"] and redo["options"][0] != first["options"][0]
    assert list(spatialdata.read_zarr(redo["output"][0])["table"].layers) == ["again"]
    # the manifest keeps the slides this call did not name
    disk = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    assert sorted(disk["slide"]) == sorted(str(p.resolve()) for p in paths[:3])


def test_failed_slides_are_reported_and_the_rest_go_on(cohort, client, tmp_path):
    paths, model = cohort
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + os.urandom(2000))
    notes = tmp_path / "notes.svs"
    notes.write_text("not a slide")
    blank = tmp_path / "blank.tif"  # a slide without tissue
    tifffile.imwrite(blank, np.full((300, 300, 3), 242, np.uint8), **TIFF)
    given = [paths[0], corrupt, notes, blank]
    df = gd.tl.predict_slides(given, model, out_dir=tmp_path / "out", scheduler=client, progress=False)
    assert df["status"].tolist() == ["done", "failed", "failed", "failed"]
    assert df["error"][1].startswith("ValueError: `path`: tiffslide cannot read")
    assert "notes.svs" in df["error"][2] and "no tissue" in df["error"][3]
    assert not any(Path(p).exists() for p in df["output"][1:])
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "manifest.csv",
        "slide0.zarr",
    ]
    again = gd.tl.predict_slides(given, model, out_dir=tmp_path / "out", scheduler="sync", progress=False)
    assert again["status"].tolist() == ["skipped", "failed", "failed", "failed"]


def test_model_file_gives_the_same_predictions(cohort, runs, tmp_path):
    paths, model = cohort
    path = model.save(tmp_path / "model.pt")
    df = gd.tl.predict_slides(paths[:1], path, out_dir=tmp_path / "out", scheduler="sync", progress=False)
    np.testing.assert_array_equal(predicted(df["output"][0]), predicted(runs["sync"]["output"][0]))
    assert not list((tmp_path / "out").glob(".genedml-model-*"))  # a model file is used where it is


def test_progress_bar(cohort, tmp_path, capsys):
    paths, model = cohort
    gd.tl.predict_slides(paths[:1], model, out_dir=tmp_path, scheduler="sync", progress=True)
    assert "predict_slides" in capsys.readouterr().err


def test_bad_arguments_fail_before_any_work(cohort, tmp_path):
    paths, model = cohort
    out = tmp_path / "out"

    def call(p=paths[:1], m=model, **kw):
        return gd.tl.predict_slides(p, m, **{"out_dir": out, "scheduler": "sync", **kw})

    with pytest.raises(ValueError, match="`paths` is empty"):
        call([])
    with pytest.raises(FileNotFoundError, match=r"`paths`: 1 slide file\(s\) do not exist.*missing.svs"):
        call([paths[0], tmp_path / "missing.svs"])
    with pytest.raises(ValueError, match="is given twice"):
        call([paths[0], paths[0]])
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / paths[0].name
    twin.write_bytes(paths[0].read_bytes())
    with pytest.raises(ValueError, match="same stem 'slide0'"):
        call([paths[0], twin])
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match=r"`out_dir`=.*is not a folder"):
        call(out_dir=tmp_path / "file")
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises((ValueError, TypeError), match="n_workers"):
            call(scheduler=None, n_workers=bad)
    with pytest.raises(ValueError, match="`n_workers`=2 applies to the LocalCluster"):
        call(n_workers=2)
    with pytest.raises(ValueError, match="threads_per_worker"):
        call(scheduler=None, threads_per_worker=0)
    with pytest.raises(ValueError, match="`threads_per_worker`=2 applies to the LocalCluster"):
        call(threads_per_worker=2)
    with pytest.raises(TypeError, match="`scheduler` must be"):
        call(scheduler=3)
    with pytest.raises(ValueError, match="`model` must be a trained genedml model"):
        call(m="not a model".split())
    with pytest.raises(FileNotFoundError, match=r"`model`=.*no such model file"):
        call(m=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="backend"):
        call(backend="pillow")
    with pytest.raises(ValueError, match="min_tissue_fraction"):
        call(min_tissue_fraction=2)
    assert not out.exists()  # nothing was written
