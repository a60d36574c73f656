from __future__ import annotations

import gzip
import logging
from importlib import resources

import pytest

import genedml as gd


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("her2st", ["IGKC", "TMSB10", "ERBB2"], "TPI1"),
        ("stnet", ["RPS3", "IGLL5", "RPLP1"], "IGF2BP4"),
        ("skinst", ["S100A8", "KRT6A", "KRT14"], "HSP90AB1"),
    ],
)
def test_panels_have_250_unique_genes_in_published_order(name, first, last):
    genes = gd.datasets.gene_panel(name)
    assert len(genes) == 250 and len(set(genes)) == 250
    assert genes[:3] == first and genes[-1] == last
    assert all(g and g == g.strip() and "," not in g for g in genes)


def test_panels_ship_as_package_data():
    files = resources.files("genedml.datasets")
    assert files.joinpath("registry.yaml").is_file()
    assert all(files.joinpath("panels", f"{n}.txt").is_file() for n in ("her2st", "stnet", "skinst"))


def test_gene_panel_returns_a_fresh_list_and_ignores_case():
    genes = gd.datasets.gene_panel("her2st")
    genes.clear()
    assert (
        gd.datasets.gene_panel("HER2ST") == gd.datasets.gene_panel("her2st")
        and len(gd.datasets.gene_panel("her2st")) == 250
    )


@pytest.mark.parametrize("bad", ["visium", "", None, 3])
def test_unknown_panel_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"`name` must be one of \['her2st', 'stnet', 'skinst'\]"):
        gd.datasets.gene_panel(bad)


@pytest.fixture
def genedml_warnings():
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("genedml")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_panel_coverage_on_real_her2st_genes(her2st_dir, genedml_warnings):
    with gzip.open(her2st_dir / "data/ST-cnts/C2.tsv.gz", "rt") as f:
        genes = f.readline().rstrip("\n").split("\t")[1:]
    present, missing = gd.datasets.panel_coverage(genes, "her2st")
    assert missing == ["PDPF", "HIFX", "ARHGDI1"]  # old aliases absent from the HER2ST annotation
    assert len(present) == 247 and present == [g for g in gd.datasets.gene_panel("her2st") if g not in missing]
    assert len(genedml_warnings) == 1 and "3 of 250" in genedml_warnings[0].getMessage()


def test_panel_coverage_accepts_anndata_and_spatialdata(tiny, genedml_warnings):
    table = tiny.tables["table"]
    from_table = gd.datasets.panel_coverage(table, "her2st")
    assert gd.datasets.panel_coverage(tiny, "her2st") == from_table
    present, missing = from_table
    assert set(present) <= set(table.var_names) and "ERBB2" in present
    assert len(present) + len(missing) == 250 and genedml_warnings
    full = gd.datasets.panel_coverage(gd.datasets.gene_panel("stnet"), "stnet")
    assert full == (gd.datasets.gene_panel("stnet"), [])
    with pytest.raises(ValueError, match="`data`"):
        gd.datasets.panel_coverage("ERBB2", "her2st")
