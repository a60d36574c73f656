"""Catalogue: files and state — weights files, model checkpoints, damaged and foreign files, zarr round trips,
resume folders and the feature cache.

Every case states its exact outcome: the error type and that the message names the user's argument (or the
documented warning), that no code in a file ever runs, and that no input file or object was changed.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _rel_helpers import FIT_KW, file_digest, random_weights_file, write_evil_pickle

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny Gene-DML model trained with a local (safetensors) encoder weights file, saved once."""
    import genedml as gd

    root = tmp_path_factory.mktemp("rel-files")
    gd.settings.cachedir = root / "cache"
    weights = random_weights_file(root / "encoder.safetensors", seed=7)
    other = random_weights_file(root / "other.safetensors", seed=8)
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    model = gd.tl.fit(sdata, weights=weights, **FIT_KW)
    ckpt = model.save(root / "model.pt")
    return SimpleNamespace(
        root=root, weights=weights, other=other, sdata=sdata, model=model, ckpt=ckpt, pred=model.predict(sdata)
    )


@pytest.fixture
def sdata(fitted):
    from spatialdata import deepcopy

    return deepcopy(fitted.sdata)


def _copy(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


# ------------------------------------------------------------------------------------------------------ weights files
REFUSED = r"(?s)`weights`=.*evil.*cannot be read safely.*never unpickles.*safetensors.torch.save_file"


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
@pytest.mark.parametrize("torch_zip", [True, False], ids=["torch-zip", "raw-pickle"])
def test_weights_file_with_code_never_runs(tmp_path, suffix, torch_zip):
    from genedml.encoders import create_encoder

    marker = tmp_path / "marker"
    path = write_evil_pickle(tmp_path / f"evil{suffix}", marker, torch_zip=torch_zip)
    before = file_digest(path)
    with pytest.raises(ValueError, match=REFUSED):
        create_encoder("test_resnet", weights=path, device="cpu")
    assert not marker.exists()
    assert file_digest(path) == before


@pytest.mark.parametrize("entry", ["embed", "fit"])
def test_weights_file_with_code_never_runs_through_the_api(tmp_path, sdata, entry):
    import genedml as gd

    marker = tmp_path / "marker"
    path = write_evil_pickle(tmp_path / "evil.pth", marker, torch_zip=True)
    table = sdata.tables["table"]
    keys_before = (set(table.obsm), set(table.uns.get("genedml", {})))
    with pytest.raises(ValueError, match="`weights`"):
        if entry == "embed":
            gd.tl.embed(sdata, encoder="test_resnet", weights=path, target_px=32, scales="global")
        else:
            gd.tl.fit(sdata, weights=path, **{**FIT_KW, "n_top_genes": 5})
    assert not marker.exists()
    if entry == "embed":  # fit's selection/targets happen before the encoder: rel-b makes fit validate first
        assert (set(table.obsm), set(table.uns.get("genedml", {}))) == keys_before


def test_lightning_checkpoint_with_objects_is_refused_with_a_conversion_hint(tmp_path):
    import argparse

    from genedml.encoders import build_architecture, create_encoder, resolve_spec

    sd = build_architecture(resolve_spec("test_resnet")).state_dict()
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(ValueError) as info:
        create_encoder("test_resnet", weights=path, device="cpu")
    msg = str(info.value)
    assert "`weights`=" in msg and "lightning.ckpt" in msg
    assert "torch.load('lightning.ckpt', weights_only=False)" in msg and "'lightning.safetensors'" in msg


def test_converted_safetensors_loads_with_the_same_features(tmp_path):
    from genedml.encoders import create_encoder
    from genedml.encoders._weights import file_sha256

    path = random_weights_file(tmp_path / "w.safetensors", seed=3)
    enc = create_encoder("test_resnet", weights=path, device="cpu")
    assert enc.weights_hash == file_sha256(path)
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    with torch.no_grad():
        assert torch.isfinite(enc.forward_pooled(enc.prepare(x))).all()


def _truncated_safetensors(tmp_path):
    good = random_weights_file(tmp_path / "good.safetensors", seed=1)
    path = tmp_path / "w.safetensors"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def _pickle_named_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    torch.save({"a": torch.zeros(2)}, path)
    return path


def _text_file(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_text("not weights")
    return path


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (_truncated_safetensors, ValueError, r"`weights`=.*not a valid safetensors file"),
        (_pickle_named_safetensors, ValueError, r"`weights`=.*not a valid safetensors file"),
        (lambda p: _text_file(p, ".txt"), ValueError, r"`weights`=.*expected a file ending in"),
        (lambda p: _text_file(p, ".npz"), ValueError, r"`weights`=.*expected a file ending in"),
        (lambda p: _text_file(p, ".pth"), ValueError, r"`weights`=.*cannot be read safely"),
        (lambda p: p / "missing.safetensors", FileNotFoundError, r"`weights`=.*is not a file"),
        (lambda p: p, FileNotFoundError, r"`weights`=.*is not a file"),
    ],
    ids=["truncated-safetensors", "pickle-as-safetensors", "txt", "npz", "text-as-pth", "missing", "folder"],
)
def test_bad_weights_files_are_clear_errors(tmp_path, make, error, pattern):
    from genedml.encoders import create_encoder

    path = make(tmp_path)
    before = file_digest(path) if path.exists() else None
    with pytest.raises(error, match=pattern):
        create_encoder("test_resnet", weights=path, device="cpu")
    assert (file_digest(path) if path.exists() else None) == before


# --------------------------------------------------------------------------------- checkpoints and the weights file
def test_checkpoint_stores_the_weights_hash_not_the_path(fitted):
    from genedml.models._save_load import read_checkpoint

    ck = read_checkpoint(fitted.ckpt)
    assert ck["encoder"]["weights"] is None
    assert ck["encoder"]["weights_file"]["sha256"] == fitted.model.encoder_info_["weights_hash"]
    assert ck["encoder"]["weights_file"]["name"] == "encoder.safetensors"
    assert str(fitted.root).encode() not in Path(fitted.ckpt).read_bytes()


def test_loaded_model_needs_the_weights_file_named_by_the_user(fitted, sdata):
    import genedml as gd
    from genedml.models import GeneDML

    model = GeneDML.load(fitted.ckpt)
    table = sdata.tables["table"]
    layers_before = set(table.layers)
    with pytest.raises(ValueError, match=r"encoder.safetensors.*pass it as `weights=`"):
        gd.tl.predict(sdata, model)
    assert set(table.layers) == layers_before


@pytest.mark.parametrize("where", ["load", "predict", "set_weights"])
def test_passing_the_weights_file_back_restores_identical_predictions(fitted, sdata, where):
    import genedml as gd
    from genedml.models import GeneDML

    model = GeneDML.load(fitted.ckpt, weights=fitted.weights if where == "load" else None)
    if where == "set_weights":
        model.set_weights(fitted.weights)
    gd.tl.predict(sdata, model, weights=fitted.weights if where == "predict" else None)
    table = sdata.tables["table"]
    got = table.layers["predicted"][:, table.var["genedml_predicted"].to_numpy()]
    want = fitted.pred[:, [fitted.model.genes_.index(g) for g in table.var_names[table.var["genedml_predicted"]]]]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("where", ["load", "predict"])
def test_a_different_weights_file_is_refused(fitted, sdata, where):
    import genedml as gd
    from genedml.models import GeneDML

    with pytest.raises(ValueError, match=r"`weights`=.*other.safetensors.*not the file this model was trained with"):
        if where == "load":
            GeneDML.load(fitted.ckpt, weights=fitted.other)
        else:
            gd.tl.predict(sdata, GeneDML.load(fitted.ckpt), weights=fitted.other)
    assert "predicted" not in sdata.tables["table"].layers


def test_weights_for_a_model_without_a_weights_file_are_refused(tmp_path, fitted, sdata):
    import genedml as gd
    from genedml.models import GeneDML

    model = gd.tl.fit(sdata, pretrained=False, **FIT_KW)
    path = model.save(tmp_path / "random.pt")
    with pytest.raises(ValueError, match=r"`weights`=.*was not trained with a local weights file"):
        GeneDML.load(path, weights=fitted.weights)


def test_old_checkpoint_pointing_to_a_weights_file_never_opens_it(tmp_path, fitted, sdata):
    """Files written before this check stored the path; `load`/`predict` must not follow it (here: to a trap)."""
    import genedml as gd
    from genedml.models import GeneDML
    from genedml.models._save_load import read_checkpoint, write_checkpoint

    marker = tmp_path / "marker"
    trap = write_evil_pickle(tmp_path / "encoder.pth", marker, torch_zip=True)
    ck = read_checkpoint(fitted.ckpt)
    ck["encoder"]["weights"] = str(trap)
    del ck["encoder"]["weights_file"]
    old = write_checkpoint(tmp_path / "old.pt", {k: v for k, v in ck.items() if k not in ("format", "checksum")})
    model = GeneDML.load(old)
    with pytest.raises(ValueError, match="pass it as `weights=`"):
        gd.tl.predict(sdata, model)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- damaged and foreign files
def _load(path, fitted):
    from genedml.models import load_method

    return load_method(path, weights=fitted.weights)


@pytest.mark.parametrize("seed", range(12))
def test_random_byte_flips_never_load_silently(tmp_path, fitted, seed):
    """Flip 1–8 random bytes: the load fails with a clear error, or (bytes the format ignores) is bit-identical."""
    from genedml.models import CheckpointError

    path = _copy(fitted.ckpt, tmp_path)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.choice(len(raw), size=int(rng.integers(1, 9)), replace=False):
        raw[pos] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(raw))
    try:
        model = _load(path, fitted)
    except CheckpointError as err:
        assert "`path`=" in str(err) and path.name in str(err)
        return
    # the flipped bytes were padding or unchecked headers: the content must be exactly the saved one
    assert model.model_hash == fitted.model.model_hash
    assert model.genes_ == fitted.model.genes_


def _zip_member_span(path: Path, which: str) -> tuple[int, int]:
    """Byte span in the file of the pickled metadata (``"data.pkl"``) or of the largest tensor (``"data/"``)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [
            i
            for i in z.infolist()
            if (i.filename.endswith("data.pkl") if which == "data.pkl" else "/data/" in i.filename)
        ]
        info = max(members, key=lambda i: i.file_size)
    with open(path, "rb") as fh:  # local header: 30 bytes + name + extra field, then the stored bytes
        fh.seek(info.header_offset)
        head = fh.read(30)
    n, m = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
    start = info.header_offset + 30 + n + m
    return start, start + info.compress_size


@pytest.mark.parametrize("where", ["tensor-bytes", "metadata-pickle"])
def test_flips_inside_content_are_refused(tmp_path, fitted, where):
    from genedml.models import CheckpointError

    path = _copy(fitted.ckpt, tmp_path)
    start, stop = _zip_member_span(path, "data/" if where == "tensor-bytes" else "data.pkl")
    raw = bytearray(path.read_bytes())
    gene = fitted.model.genes_[0].encode()
    pos = (start + stop) // 2 if where == "tensor-bytes" else start + bytes(raw[start:stop]).index(gene) + 1
    raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"`path`=.*model.pt.* is damaged: its content does not match"):
        _load(path, fitted)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_model_file_is_a_clear_error(tmp_path, fitted, fraction):
    from genedml.models import CheckpointError

    raw = Path(fitted.ckpt).read_bytes()
    path = tmp_path / "model.pt"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(CheckpointError, match=r"`path`=.*model.pt.*not a readable genedml checkpoint"):
        _load(path, fitted)


def _state_dict_file(p):
    torch.save({"w": torch.zeros(3)}, p / "state.pt")
    return p / "state.pt"


def _json_file(p):
    (p / "model.json").write_text(json.dumps({"format": "genedml-model/1"}))
    return p / "model.json"


def _random_bytes(p):
    (p / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return p / "model.pt"


def _safetensors_file(p):
    return random_weights_file(p / "model.safetensors", seed=0)


def _empty(p):
    (p / "model.pt").write_bytes(b"")
    return p / "model.pt"


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (_state_dict_file, "CheckpointError", r"`path`=.*not a genedml checkpoint"),
        (_json_file, "CheckpointError", r"`path`=.*not a readable genedml checkpoint"),
        (_random_bytes, "CheckpointError", r"`path`=.*not a readable genedml checkpoint"),
        (_safetensors_file, "CheckpointError", r"`path`=.*not a (readable )?genedml checkpoint"),
        (_empty, "CheckpointError", r"`path`=.*not a readable genedml checkpoint"),
        (lambda p: p, "FileNotFoundError", r"`path`=.*no such checkpoint file"),
        (lambda p: p / "none.pt", "FileNotFoundError", r"`path`=.*no such checkpoint file"),
    ],
    ids=["plain-state-dict", "json", "random-bytes", "safetensors", "empty", "folder", "missing"],
)
def test_foreign_files_are_not_models(tmp_path, make, error, pattern):
    import genedml.models as gm
    from genedml.models import GeneDML

    path = make(tmp_path)
    before = file_digest(path) if path.exists() else None
    exc = getattr(gm, error, None) or FileNotFoundError
    with pytest.raises(exc, match=pattern):
        GeneDML.load(path)
    assert (file_digest(path) if path.exists() else None) == before


@pytest.mark.parametrize("torch_zip", [True, False], ids=["torch-zip", "raw-pickle"])
def test_model_file_with_code_never_runs(tmp_path, torch_zip):
    from genedml.models import CheckpointError, load_method

    marker = tmp_path / "marker"
    path = write_evil_pickle(tmp_path / "model.pt", marker, torch_zip=torch_zip)
    with pytest.raises(CheckpointError, match="`path`="):
        load_method(path)
    assert not marker.exists()


@pytest.mark.parametrize("edit", ["genes", "tensor", "config", "checksum"])
def test_edited_content_is_refused(tmp_path, fitted, edit):
    """Re-saved with torch after an edit (keeping the stored checksum): the checksum no longer matches."""
    from genedml.models import CheckpointError

    ck = torch.load(fitted.ckpt, weights_only=True)
    if edit == "genes":
        ck["genes"] = ck["genes"][::-1]
    elif edit == "tensor":
        name = next(iter(ck["state_dict"]))
        ck["state_dict"][name] = ck["state_dict"][name] + 1
    elif edit == "config":
        ck["normalize"] = {**ck["normalize"], "recipe": "log1p_cp10k"}
    else:
        ck["checksum"] = "0" * 64
    path = tmp_path / "edited.pt"
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match=r"`path`=.*edited.pt.*damaged"):
        _load(path, fitted)


def test_file_without_checksum_is_verified_by_its_model_hash(tmp_path, fitted, caplog):
    """Older files (no checksum) load when their weights match the stored model hash, with a logged warning."""
    from genedml.models import CheckpointError

    ck = torch.load(fitted.ckpt, weights_only=True)
    del ck["checksum"]
    ok = tmp_path / "old.pt"
    torch.save(ck, ok)
    with caplog.at_level(logging.WARNING, logger="genedml"):
        assert _load(ok, fitted).model_hash == fitted.model.model_hash
    assert "no content checksum" in caplog.text
    name = next(iter(ck["state_dict"]))
    ck["state_dict"][name] = ck["state_dict"][name] * 2
    bad = tmp_path / "old-bad.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match="damaged"):
        _load(bad, fitted)


def test_baseline_checkpoint_is_verified_too(tmp_path, sdata):
    from genedml.models import CheckpointError, load_method, make_method

    model = make_method("ridge", encoder="test_resnet", pretrained=False, target_px=32)
    model.setup(sdata, n_top_genes=5, progress=False).train()
    path = model.save(tmp_path / "ridge.pt")
    assert load_method(path).model_hash == model.model_hash
    raw = bytearray(path.read_bytes())
    start, stop = _zip_member_span(path, "data/")
    raw[(start + stop) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        load_method(path)


# ------------------------------------------------------------------------------------------------- model writes
def test_save_refuses_to_clobber_and_leaves_the_file(tmp_path, fitted):
    path = _copy(fitted.ckpt, tmp_path, "keep.pt")
    before = file_digest(path)
    with pytest.raises(FileExistsError, match=r"`path`=.*keep.pt.*overwrite=True"):
        fitted.model.save(path)
    assert file_digest(path) == before


def test_save_to_a_folder_is_a_clear_error(tmp_path, fitted):
    with pytest.raises(IsADirectoryError, match=r"`path`=.*is a folder"):
        fitted.model.save(tmp_path, overwrite=True)


def test_failed_model_write_names_the_users_path_and_leaves_nothing(tmp_path, fitted, monkeypatch):
    path = _copy(fitted.ckpt, tmp_path, "model.pt")
    before = file_digest(path)

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match=r"`path`=.*model.pt.*could not be written.*No space") as info:
        fitted.model.save(path, overwrite=True)
    assert ".tmp" not in str(info.value)
    monkeypatch.undo()
    assert file_digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# ------------------------------------------------------------------------------------------------- feature cache
def test_failed_cache_write_names_the_cache_folder(tmp_path, sdata, monkeypatch):
    import genedml as gd

    gd.settings.cachedir = tmp_path / "cache"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    table = sdata.tables["table"]
    before = set(table.obsm)
    with pytest.raises(OSError, match=r"feature store in .*cache.*gd.settings.cachedir.*cache=False") as info:
        gd.tl.embed(sdata, encoder="test_resnet", pretrained=False, target_px=32, scales="global")
    assert ".tmp" not in str(info.value)
    assert set(table.obsm) == before and "features" not in table.uns.get("genedml", {})
    left = list((tmp_path / "cache").rglob("*"))
    assert not [p for p in left if p.name == "meta.json" or p.name.startswith(".")], "no entry, no temporary folder"


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign-key", "empty"])
def test_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path, sdata, caplog, damage):
    import genedml as gd

    gd.settings.cachedir = tmp_path / "cache"
    kw = dict(encoder="test_resnet", pretrained=False, target_px=32, scales="global")
    gd.tl.embed(sdata, **kw)
    want = gd.features.load_features(sdata, encoder="test_resnet", scale="global")
    entries = sorted(p.parent for p in (tmp_path / "cache").rglob("meta.json"))
    assert entries
    target = entries[0] / "pooled.npy"
    raw = bytearray(target.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 3]
    elif damage == "empty":
        raw = bytearray()
    if damage == "foreign-key":  # another entry's (valid) record under this entry's name
        assert len(entries) > 1
        shutil.copyfile(entries[1] / "meta.json", entries[0] / "meta.json")
    else:
        target.write_bytes(bytes(raw))
    from genedml.features import _cache

    _cache._VERIFIED.clear()  # a new process: nothing verified yet
    with caplog.at_level(logging.WARNING, logger="genedml"):
        gd.tl.embed(sdata, **kw)
    np.testing.assert_array_equal(gd.features.load_features(sdata, encoder="test_resnet", scale="global"), want)
    assert "discarding unreadable feature-store entry" in caplog.text


# --------------------------------------------------------------------------------------------------- zarr round trips
@pytest.fixture(scope="module")
def through_zarr(fitted, tmp_path_factory):
    """The documented workflow through a store: fit → predict → evaluate → write_zarr → read_zarr."""
    from spatialdata import deepcopy

    import genedml as gd

    sdata = deepcopy(fitted.sdata)
    gd.tl.predict(sdata, fitted.model)
    gd.tl.evaluate(sdata)
    gd.tl.embed(sdata, encoder="test_resnet", weights=fitted.weights, target_px=32, progress=False)  # a reference
    store = tmp_path_factory.mktemp("rel-zarr") / "data.zarr"
    gd.io.write_zarr(sdata, store)
    return SimpleNamespace(before=sdata, store=store, after=gd.io.read_zarr(store))


@pytest.mark.parametrize("record", ["sections", "gene_join", "features", "predicted", "evaluation"])
def test_every_provenance_record_survives_zarr_and_compares_equal(through_zarr, record):
    from genedml._records import plain, records_equal

    before = through_zarr.before.tables["table"].uns["genedml"][record]
    after = through_zarr.after.tables["table"].uns["genedml"][record]
    assert records_equal(before, after)
    assert after == plain(after)  # read back as plain lists/scalars: `==`, `in` and `list(...)` behave


def test_workflow_through_zarr_end_to_end(fitted, through_zarr, tmp_path):
    """Read the store, then predict (features already there), evaluate and embed again: same numbers, no crash."""
    import genedml as gd

    sdata = gd.io.read_zarr(through_zarr.store)
    store_before = file_digest(through_zarr.store)
    gd.tl.predict(sdata, fitted.model, weights=fitted.weights, key_added="again")
    table = sdata.tables["table"]
    np.testing.assert_array_equal(table.layers["again"], through_zarr.before.tables["table"].layers["predicted"])
    scores = gd.tl.evaluate(sdata, layer="again")
    want = gd.tl.evaluate(through_zarr.before)
    assert list(scores["role"]) == list(want["role"])  # each section's role survives the round trip too
    num = scores.columns.drop("role")
    np.testing.assert_allclose(scores[num].to_numpy(dtype=float), want[num].to_numpy(dtype=float), equal_nan=True)
    feats = gd.features.load_features(sdata, encoder="test_resnet", scale="global")  # via the reference in uns
    gd.tl.embed(sdata, encoder="test_resnet", weights=fitted.weights, target_px=32)
    np.testing.assert_array_equal(gd.features.load_features(sdata, encoder="test_resnet", scale="global"), feats)
    assert file_digest(through_zarr.store) == store_before  # reading never writes the store
    again = tmp_path / "again.zarr"
    gd.io.write_zarr(sdata, again)
    gd.tl.predict(gd.io.read_zarr(again), fitted.model)  # a second round trip works as well


def test_spatialdata_reader_records_compare_too(fitted, through_zarr):
    """A store read with spatialdata itself (as the CLI's --data may) still embeds and predicts."""
    import spatialdata

    import genedml as gd

    sdata = spatialdata.read_zarr(through_zarr.store)
    gd.tl.predict(sdata, fitted.model, key_added="raw")
    np.testing.assert_array_equal(
        sdata.tables["table"].layers["raw"], through_zarr.before.tables["table"].layers["predicted"]
    )


@pytest.mark.parametrize("case", ["exists", "not-a-store-overwrite", "read-missing", "read-not-a-store"])
def test_zarr_paths_are_checked(tmp_path, through_zarr, case):
    import genedml as gd

    if case == "exists":
        path = tmp_path / "s.zarr"
        shutil.copytree(through_zarr.store, path)
        before = file_digest(path)
        with pytest.raises(FileExistsError, match=r"`path`=.*already exists.*overwrite=True"):
            gd.io.write_zarr(through_zarr.before, path)
    elif case == "not-a-store-overwrite":
        path = tmp_path / "notes"
        path.mkdir()
        (path / "keep.txt").write_text("mine")
        before = file_digest(path)
        with pytest.raises(FileExistsError, match=r"`path`=.*not a zarr store.*refusing"):
            gd.io.write_zarr(through_zarr.before, path, overwrite=True)
    elif case == "read-missing":
        path, before = tmp_path / "none.zarr", None
        with pytest.raises(FileNotFoundError, match=r"`path`=.*does not exist"):
            gd.io.read_zarr(path)
    else:
        path = tmp_path / "plain"
        path.mkdir()
        before = file_digest(path)
        with pytest.raises(ValueError, match=r"`path`=.*is not a zarr store"):
            gd.io.read_zarr(path)
    assert (file_digest(path) if path.exists() else None) == before


# --------------------------------------------------------------------------------------------------- resume folders
CV_KW = dict(
    methods=("mean",), n_top_genes=5, n_hpg=3, encoder="test_resnet", pretrained=False, target_px=32, groupby="section"
)


@pytest.fixture(scope="module")
def cv_done(tmp_path_factory):
    import genedml as gd

    root = tmp_path_factory.mktemp("rel-cv")
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    res = gd.tl.cross_validate(sdata, resume_dir=root / "resume", **CV_KW)
    return SimpleNamespace(root=root, resume=root / "resume", scores=res.scores)


def _resume_copy(cv_done, tmp_path) -> Path:
    dst = tmp_path / "resume"
    shutil.copytree(cv_done.resume, dst)
    return dst


def test_resume_with_the_same_data_reuses_the_scores(cv_done, tmp_path):
    import genedml as gd

    resume = _resume_copy(cv_done, tmp_path)
    before = file_digest(resume)
    res = gd.tl.cross_validate(gd.datasets.synthetic(preset="tiny", seed=0), resume_dir=resume, **CV_KW)
    import pandas as pd

    pd.testing.assert_frame_equal(res.scores, cv_done.scores)
    assert file_digest(resume) == before


def _other_counts(sdata):
    t = sdata.tables["table"]
    t.X = t.X.copy()
    t.X.data[::7] += 1
    t.layers["counts"] = t.X.copy()


def _other_spot_ids(sdata):
    t = sdata.tables["table"]
    t.obs_names = [f"x{n}" for n in t.obs_names]


def _other_image(sdata):
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    key = "S1_hne"
    el = sdata.images[key]
    arr = np.asarray(el.data).copy()
    arr[:, :64, :64] = 255 - arr[:, :64, :64]
    sdata.images[key] = Image2DModel.parse(
        arr, dims=("c", "y", "x"), c_coords=["r", "g", "b"], transformations=get_transformation(el, get_all=True)
    )


def _other_seed(sdata):
    import genedml as gd

    other = gd.datasets.synthetic(preset="tiny", seed=1)
    sdata.tables["table"] = other.tables["table"]
    for k in list(sdata.images):
        sdata.images[k] = other.images[k]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_other_counts, "counts"),
        (_other_spot_ids, "spot_ids"),
        (_other_image, "images"),
        (_other_seed, "counts"),
    ],
    ids=["counts", "spot-ids", "image", "another-dataset"],
)
def test_resume_with_other_data_is_refused(cv_done, tmp_path, change, named):
    import genedml as gd

    resume = _resume_copy(cv_done, tmp_path)
    before = file_digest(resume)
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    change(sdata)
    with pytest.raises(ValueError, match=rf"`resume_dir`=.*different run.*data \(.*{named}"):
        gd.tl.cross_validate(sdata, resume_dir=resume, **CV_KW)
    assert file_digest(resume) == before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not-a-record"])
def test_damaged_resume_record_is_a_clear_error(cv_done, tmp_path, damage):
    import genedml as gd

    resume = _resume_copy(cv_done, tmp_path)
    record = sorted(resume.glob("*.json"))[0]
    text = record.read_text()
    record.write_text(
        {"garbage": "\x00not json", "truncated": text[: len(text) // 2], "not-a-record": "[1, 2]"}[damage]
    )
    before = file_digest(resume)
    with pytest.raises(ValueError, match=rf"`resume_dir`=.*{record.name}.*not a readable result"):
        gd.tl.cross_validate(gd.datasets.synthetic(preset="tiny", seed=0), resume_dir=resume, **CV_KW)
    assert file_digest(resume) == before


def test_damaged_fold_model_in_resume_folder_is_a_clear_error(cv_done, tmp_path):
    import genedml as gd
    from genedml.models import CheckpointError

    resume = _resume_copy(cv_done, tmp_path)
    model = sorted(resume.glob("*.pt"))[0]
    raw = bytearray(model.read_bytes())
    start, stop = _zip_member_span(model, "data/")
    raw[(start + stop) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"`path`=.*{model.name}.*damaged"):
        gd.tl.cross_validate(gd.datasets.synthetic(preset="tiny", seed=0), resume_dir=resume, **CV_KW)
