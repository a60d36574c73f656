"""The synthetic morphology → expression map: gene design and negative-binomial counts.

``log μ[s, g] = baseline[g] + Σ_r fraction[s, r] · region_effect[g, r] + Σ_c coef[g, c] · z[s, c]
+ Σ_k loading[g, k] · latent[s, k] + log library[s]``

where ``fraction`` are the tissue-region area fractions under spot ``s``, ``z`` the standardised covariates measured
under it (nuclei density, haematoxylin, eosin), ``latent`` spatially smooth factors the image does not show and
``library`` the spot's capture depth (section depth × spot noise × tissue coverage). The first three terms are the
noise-free, image-predictable part (``obsm["synthetic_logmu"]``). Counts are Gamma–Poisson (NB) with per-gene size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._layout import REGIONS

__all__ = ["COVARIATES", "GeneDesign", "design_genes", "sample_counts"]

COVARIATES = ("nuclei_density", "hematoxylin", "eosin")
N_LATENT = 4

# named genes per role, interleaved so that even a few genes cover every role
_MARKERS = {
    "tumour": [
        "ERBB2",
        "GNAS",
        "FASN",
        "KRT19",
        "KRT18",
        "KRT8",
        "KRT7",
        "MUCL1",
        "GRB7",
        "SCD",
        "CD24",
        "TFF3",
        "XBP1",
        "AZGP1",
        "MIEN1",
        "STARD3",
        "PGAP3",
        "SPDEF",
        "CLDN4",
        "EPCAM",
    ],
    "immune": [
        "CD74",
        "IGKC",
        "PTPRC",
        "IGHG3",
        "IGLC2",
        "IGHA1",
        "HLA-DRA",
        "LAPTM5",
        "C1QA",
        "C1QB",
        "CD52",
        "IGHM",
        "CXCL13",
        "CD79A",
        "MS4A1",
        "CD3E",
    ],
    "stroma": [
        "COL1A1",
        "COL1A2",
        "COL3A1",
        "FN1",
        "SPARC",
        "POSTN",
        "BGN",
        "AEBP1",
        "VIM",
        "LUM",
        "DCN",
        "MGP",
        "COL6A2",
        "TAGLN",
        "MYL9",
        "ACTA2",
    ],
    "fat": ["ADIPOQ", "PLIN1", "FABP4", "LEP", "CFD", "LPL", "CIDEA", "PLIN4"],
    "proliferation": ["MKI67", "TOP2A", "HMGB2", "CCNB1", "TUBB"],
    "housekeeping": ["ACTB", "GAPDH", "TMSB10", "FTL", "FTH1", "TPT1", "EEF1A1", "B2M", "MALAT1", "RPLP0"],
}


def _named_genes() -> list[tuple[str, str]]:
    lists = [[(g, role) for g in genes] for role, genes in _MARKERS.items()]
    out = []
    for k in range(max(map(len, lists))):
        out += [lst[k] for lst in lists if k < len(lst)]
    return out


@dataclass
class GeneDesign:
    """Per-gene parameters of the expression model (arrays over genes)."""

    names: list[str]
    role: np.ndarray  # str: a region name, "proliferation", "housekeeping", "strong", "weak" or "noise"
    baseline: np.ndarray  # (G,)
    region_effect: np.ndarray  # (G, n_regions)
    coef: np.ndarray  # (G, n_covariates)
    loadings: np.ndarray  # (G, N_LATENT)
    size: np.ndarray  # NB size (inverse dispersion), (G,)

    def logmu(self, fractions: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Noise-free, image-predictable log-mean ``(n_spots, G)``."""
        out = fractions.astype(np.float32) @ self.region_effect.T.astype(np.float32)
        out += z.astype(np.float32) @ self.coef.T.astype(np.float32)
        out += self.baseline.astype(np.float32)[None, :]
        return out


def design_genes(n_genes: int, rng: np.random.Generator) -> GeneDesign:
    """Draw ``n_genes`` genes: named markers first (interleaved by role), then ``GENE_0001`` … of random strength."""
    named = _named_genes()[:n_genes]
    n_generic = n_genes - len(named)
    names = [g for g, _ in named] + [f"GENE_{i + 1:04d}" for i in range(n_generic)]
    generic_roles = rng.choice(["strong", "weak", "noise"], size=n_generic, p=[0.25, 0.4, 0.35])
    role = np.array([r for _, r in named] + list(generic_roles), dtype=object)
    n_reg, n_cov = len(REGIONS), len(COVARIATES)
    baseline = np.empty(n_genes)
    region = np.zeros((n_genes, n_reg))
    coef = np.zeros((n_genes, n_cov))
    for g, r in enumerate(role):
        baseline[g], region[g], coef[g] = _gene_effects(r, rng, n_reg, n_cov)
    loadings = rng.normal(0.0, 0.3, (n_genes, N_LATENT)) * (rng.random((n_genes, N_LATENT)) < 0.5)
    loadings[role == "noise"] *= 1.6
    size = np.exp(rng.normal(np.log(4.0), 0.5, n_genes))
    return GeneDesign(names, role.astype(str), baseline, region, coef, loadings, size)


def _gene_effects(role: str, rng: np.random.Generator, n_reg: int, n_cov: int):
    """Baseline, region effects and covariate coefficients of one gene of a given role."""
    if role in REGIONS:
        own = REGIONS.index(role)
        region = rng.uniform(-0.6, 0.2, n_reg)
        region[own] = rng.uniform(2.5, 3.5) if role == "fat" else rng.uniform(1.8, 2.8)
        if role == "fat":
            region[np.arange(n_reg) != own] -= 0.8
        coef = rng.normal(0.0, 0.08, n_cov)
        return rng.normal(1.0, 0.5), region, coef
    if role == "proliferation":
        region = np.zeros(n_reg)
        region[REGIONS.index("tumour")] = rng.uniform(0.5, 1.0)
        return rng.normal(0.3, 0.3), region, np.array([rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.3), 0.0])
    if role == "housekeeping":
        return rng.normal(3.5, 0.5), rng.normal(0.0, 0.1, n_reg), np.array([0.2, 0.0, 0.0])
    sd_region, sd_cov = {"strong": (1.0, 0.3), "weak": (0.3, 0.08), "noise": (0.0, 0.0)}[role]
    return np.clip(rng.normal(0.5, 1.0), -2.0, 3.5), rng.normal(0.0, sd_region, n_reg), rng.normal(0.0, sd_cov, n_cov)


def sample_counts(logmu: np.ndarray, size: np.ndarray, rng: np.random.Generator, *, batch: int = 4096) -> np.ndarray:
    """Negative-binomial counts (Gamma–Poisson) with means ``exp(logmu)`` and per-gene NB ``size`` (row batches)."""
    out = np.empty(logmu.shape, dtype=np.int32)
    for s in range(0, logmu.shape[0], batch):
        mu = np.exp(np.clip(logmu[s : s + batch], -20.0, 12.0))
        lam = rng.gamma(np.broadcast_to(size[None, :], mu.shape), mu / size[None, :])
        out[s : s + batch] = rng.poisson(lam)
    return out
