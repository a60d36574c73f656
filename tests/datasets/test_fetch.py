"""Dataset downloaders, offline: files are placed in the cache by hand, and the network is never used."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import tarfile
from pathlib import Path

import pytest

import genedml as gd
from genedml.datasets import _fetch


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to download; record the attempts."""
    attempts = []

    def factory(headers):
        def download(url, output_file, pooch):
            attempts.append((url, headers))
            raise OSError(f"network disabled in tests (tried {url})")

        return download

    monkeypatch.setattr(_fetch, "_downloader", factory)
    return attempts


def _her2st_entries(sections):
    reg = _fetch.registry()["her2st"]
    return [e for s in sections for e in reg["sections"][s]["files"].values()]


def _place(her2st_dir: Path, sections, *, copy=False) -> Path:
    """Put the real HER2ST files where the downloader caches them (symlinks: inputs are read-only)."""
    root = Path(gd.settings.datasetdir) / "her2st"
    for e in _her2st_entries(sections):
        dst = root / e["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copyfile(her2st_dir / e["path"], dst)
        else:
            dst.symlink_to(her2st_dir / e["path"])
    return root


def test_registry_matches_the_real_her2st_files(her2st_dir):
    reg = _fetch.registry()["her2st"]
    assert reg["base_url"].startswith(
        "https://raw.githubusercontent.com/almaan/her2st/85df7411b987a7dec3feff9718b869a7a82091ec/"
    )
    assert len(reg["sections"]) == 36
    for e in _her2st_entries(["B4", "C2", "C3", "C4", "C5"]):  # the five local sections: every file verified
        data = (her2st_dir / e["path"]).read_bytes()
        assert len(data) == e["size"] and hashlib.sha256(data).hexdigest() == e["sha256"], e["path"]
        assert e["doc"]


def test_her2st_loads_offline_from_the_cache(her2st_dir, no_network):
    _place(her2st_dir, ["B4", "C2"])
    sdata = gd.datasets.her2st(sections=["B4", "C2"])
    assert no_network == []
    gd.io.validate(sdata)
    obs = sdata.tables["table"].obs
    assert obs.groupby("section", observed=True).size().to_dict() == {"B4": 283, "C2": 187}
    assert dict(zip(obs["section"].astype(str), obs["patient"].astype(str))) == {"B4": "B", "C2": "C"}
    assert gd.io.pixel_size(sdata, "C2") == pytest.approx(0.69, abs=0.01)


def test_her2st_unknown_section_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"`sections`.*'A7'.*available.*'A1', .*'H3'"):
        gd.datasets.her2st(sections=["B4", "A7"])
    with pytest.raises(ValueError, match="`sections` is empty"):
        gd.datasets.her2st(sections=[])
    with pytest.raises(ValueError, match="twice"):
        gd.datasets.her2st(sections=["B4", "B4"])


def test_her2st_registry_covers_the_paper_cohort():
    """36 sections of patients A–H (6 serial sections for A–D, 3 for E–H); counts and spots always verified."""
    import collections

    reg = _fetch.registry()["her2st"]["sections"]
    per_patient = collections.Counter(v["patient"] for v in reg.values())
    assert per_patient == {**dict.fromkeys("ABCD", 6), **dict.fromkeys("EFGH", 3)}
    assert all(s[0] == v["patient"] for s, v in reg.items())
    for s, v in reg.items():
        assert set(v["files"]) == {"counts", "spots", "image"}
        for kind in ("counts", "spots"):
            e = v["files"][kind]
            assert len(e["sha256"]) == 64 and e["size"] > 0, (s, kind)
        image = v["files"]["image"]
        assert (image["sha256"] is None) == (image["size"] is None)
        assert image["sha256"] is not None or "not verified" in image["doc"]
    assert sorted(s for s, v in reg.items() if v["files"]["image"]["sha256"]) == ["B4", "C2", "C3", "C4", "C5", "C6"]


def test_her2st_all_and_patients_choose_sections(monkeypatch):
    chosen = []
    monkeypatch.setattr(_fetch, "fetch_file", lambda ds, e, base, **kw: chosen.append(e["path"]) or Path(e["path"]))
    monkeypatch.setattr("genedml.io.read_st", lambda df: list(df["section"]))
    assert gd.datasets.her2st() == ["B4", "C2", "C3", "C4", "C5"]
    all36 = gd.datasets.her2st(sections="all")
    assert len(all36) == 36 and all36[:7] == ["A1", "A2", "A3", "A4", "A5", "A6", "B1"]
    assert gd.datasets.her2st(patients=["E", "B"]) == ["B1", "B2", "B3", "B4", "B5", "B6", "E1", "E2", "E3"]
    assert gd.datasets.her2st(patients="H") == ["H1", "H2", "H3"]
    with pytest.raises(ValueError, match=r"`patients`: unknown HER2ST patient\(s\) \['Z'\]"):
        gd.datasets.her2st(patients=["A", "Z"])
    with pytest.raises(ValueError, match="not both"):
        gd.datasets.her2st(sections=["A1"], patients=["A"])


def test_corrupt_cached_file_is_refetched_and_a_failed_fetch_is_a_clear_error(her2st_dir, no_network):
    root = _place(her2st_dir, ["B4"], copy=True)
    spots = root / "data/ST-spotfiles/B4_selection.tsv"
    spots.write_bytes(spots.read_bytes() + b"\n")  # a modified cached file: wrong sha256
    with pytest.raises(gd.datasets.DownloadError) as err:
        gd.datasets.her2st(sections=["B4"])
    msg = str(err.value)
    assert "B4_selection.tsv" in msg and "expected 192b46f3ca41" in msg and "network disabled" in msg
    assert [a[0] for a in no_network] == [
        _fetch.registry()["her2st"]["base_url"] + "data/ST-spotfiles/B4_selection.tsv"
    ]
    assert spots.read_bytes().endswith(b"\n\n")  # the failed download left the cached file alone


def test_downloaded_file_with_wrong_checksum_is_rejected(monkeypatch):
    def factory(headers):
        def download(url, output_file, pooch):
            Path(output_file).write_bytes(b"not the counts")

        return download

    monkeypatch.setattr(_fetch, "_downloader", factory)
    with pytest.raises(gd.datasets.DownloadError, match=r"B4\.tsv\.gz") as err:
        gd.datasets.her2st(sections=["B4"])
    assert "hash" in str(err.value).lower()
    assert not (Path(gd.settings.datasetdir) / "her2st" / "data/ST-cnts/B4.tsv.gz").exists()


def test_download_path_verifies_and_caches(her2st_dir, monkeypatch):
    """A (fake) download that delivers the right bytes is accepted and cached; a second call is offline."""
    urls = []
    base = _fetch.registry()["her2st"]["base_url"]

    def factory(headers):
        def download(url, output_file, pooch):
            urls.append(url)
            shutil.copyfile(her2st_dir / url.removeprefix(base), output_file)

        return download

    monkeypatch.setattr(_fetch, "_downloader", factory)
    gd.datasets.her2st(sections=["B4"])
    assert len(urls) == 3 and all(u.startswith(base) for u in urls)
    gd.datasets.her2st(sections=["B4"])
    assert len(urls) == 3


# ------------------------------------------------------------------------------------------------ hest


def test_hest_requires_a_token_only_to_download(monkeypatch, no_network):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(gd.datasets.DownloadError, match=r"gated.*HF_TOKEN"):
        gd.datasets.hest("TENX95")
    assert no_network == []
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with pytest.raises(gd.datasets.DownloadError, match="network disabled"):
        gd.datasets.hest("TENX95")
    url, headers = no_network[0]
    assert url == "https://huggingface.co/datasets/MahmoodLab/hest/resolve/main/st/TENX95.h5ad"
    assert headers == {"Authorization": "Bearer hf_secret"}
    with pytest.raises(gd.datasets.DownloadError):
        gd.datasets.hest("TENX95", token="hf_other")
    assert no_network[-1][1] == {"Authorization": "Bearer hf_other"}


def test_hest_reads_cached_files_without_token(monkeypatch, no_network):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = Path(gd.settings.datasetdir) / "hest"
    for rel in ("st/NCBI463.h5ad", "wsis/NCBI463.tif", "metadata/NCBI463.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    seen = {}
    monkeypatch.setattr(
        gd.io, "read_hest", lambda h5ad, image, metadata, **kw: seen.update(files=(h5ad, image, metadata), **kw)
    )
    gd.datasets.hest("NCBI463")
    assert seen["files"] == (root / "st/NCBI463.h5ad", root / "wsis/NCBI463.tif", root / "metadata/NCBI463.json")
    assert seen["section"] == "NCBI463" and no_network == []


@pytest.mark.parametrize("bad", ["", "../TENX95", "a/b", 95])
def test_hest_rejects_bad_sample_ids(bad):
    with pytest.raises(ValueError, match="`sample_id`"):
        gd.datasets.hest(bad)


# ------------------------------------------------------------------------------------------------ visium


def test_visium_unknown_name_lists_the_registered_samples():
    with pytest.raises(ValueError, match=r"`name`.*V1_Breast_Cancer_Block_A_Section_1"):
        gd.datasets.visium_10x("V1_Mouse_Brain")


def test_visium_unpacks_spatial_and_reads_the_folder(monkeypatch, no_network):
    name = "V1_Breast_Cancer_Block_A_Section_2"
    root = Path(gd.settings.datasetdir) / "visium_10x" / name
    root.mkdir(parents=True)
    (root / f"{name}_filtered_feature_bc_matrix.h5").write_bytes(b"h5")
    (root / f"{name}_image.tif").write_bytes(b"tif")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in (("spatial/scalefactors_json.json", b"{}"), ("spatial/tissue_positions_list.csv", b"")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / f"{name}_spatial.tar.gz").write_bytes(buf.getvalue())
    seen = {}
    monkeypatch.setattr(gd.io, "read_visium", lambda path, **kw: seen.update(path=path, **kw))
    gd.datasets.visium_10x(name)
    assert (root / "spatial" / "scalefactors_json.json").is_file()
    assert seen == {"path": root, "section": name, "fullres_image_file": root / f"{name}_image.tif"}
    assert no_network == []


# ------------------------------------------------------------------------------------------------ real download


@pytest.mark.internet
def test_her2st_real_download():
    logging.getLogger("pooch").setLevel(logging.WARNING)
    sdata = gd.datasets.her2st(sections=["C5"])
    assert sdata.tables["table"].n_obs == 181


def test_hest_cohorts_of_the_paper():
    assert len(gd.datasets.hest_cohort("her2st")) == 36
    stnet = gd.datasets.hest_cohort("stnet")
    assert (len(stnet), stnet[0], stnet[-1]) == (68, "SPA51", "SPA118")
    assert gd.datasets.hest_cohort("skinst")[:2] == ["NCBI759", "NCBI760"]
    assert not set(stnet) & set(gd.datasets.hest_cohort("her2st"))
    with pytest.raises(ValueError, match="`name` must be one of the registered cohorts"):
        gd.datasets.hest_cohort("cscc")
