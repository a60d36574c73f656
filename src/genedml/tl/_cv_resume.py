"""Resuming `cross_validate`: where each finished (method, fold) is kept and how a rerun recognises it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._keys import Keys
from .._logging import logger
from .._utils import atomic_path
from .._validators import rename_legacy_keys

__all__ = ["data_fingerprint", "load_done", "model_path", "run_fingerprint", "save_done"]


def _done_path(resume: Path | None, name: str, f: int) -> Path | None:
    return None if resume is None else resume / f"{name}.fold{f}.json"


def model_path(resume: Path, name: str, f: int) -> Path:
    return resume / f"{name}.fold{f}.pt"


def run_fingerprint(**what) -> dict:
    """JSON-normal form of everything that decides a (method, fold) result (compared when resuming)."""
    default = lambda o: o.identity_dict() if hasattr(o, "identity_dict") else repr(o)  # noqa: E731
    return json.loads(json.dumps(what, default=default, sort_keys=True))


def data_fingerprint(sdata, table) -> dict:
    """What identifies the data: sections, spot ids, spot centres, a counts digest and each image's identity."""
    import hashlib

    import scipy.sparse as sp

    from .. import io as gio
    from ..features import SectionImage

    def digest(*parts) -> str:
        h = hashlib.sha256()
        for part in parts:
            a = np.ascontiguousarray(part)
            h.update(f"{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes() if a.dtype != object else "\x1f".join(map(str, a.ravel())).encode())
        return h.hexdigest()[:32]

    counts = table.layers[Keys.counts] if Keys.counts in table.layers else table.X
    if counts is None:
        counts_fp = "none"
    elif sp.issparse(counts):
        c = sp.csr_matrix(counts)
        c.sum_duplicates()
        counts_fp = digest(np.array(c.shape), c.indptr, c.indices, c.data)
    else:
        counts_fp = digest(np.asarray(counts))
    secs = gio.sections(sdata, table_key=_table_key_of(sdata, table))
    images, spots = {}, {}
    for s in secs:
        try:
            images[s] = SectionImage.from_sdata(sdata, s).identity()[:32]
        except (KeyError, ValueError) as err:
            images[s] = f"unavailable: {type(err).__name__}"
        try:
            spots[s] = digest(gio.spot_centers(sdata, s, table_key=_table_key_of(sdata, table)))
        except (KeyError, ValueError) as err:
            spots[s] = f"unavailable: {type(err).__name__}"
    return {
        "sections": secs,
        "spot_ids": digest(np.asarray(table.obs_names, dtype=object), table.obs[Keys.section].astype(str).to_numpy()),
        "genes": digest(np.asarray(table.var_names, dtype=object)),
        "counts": counts_fp,
        "images": images,
        "spot_centres": spots,
    }


def _table_key_of(sdata, table) -> str | None:
    for key, t in sdata.tables.items():
        if t is table:
            return key
    return None


def load_done(resume: Path | None, name: str, f: int, fingerprint: dict) -> dict | None:
    p = _done_path(resume, name, f)
    if p is None or not p.is_file():
        return None
    try:
        done = json.loads(p.read_text())
        if not isinstance(done, dict) or not isinstance(done.get("rows"), list):
            raise ValueError("not a result record")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"`resume_dir`={str(resume)!r}: {p.name} is not a readable result of this function ({err}); delete it "
            "or pass a new `resume_dir`."
        ) from None
    old = done.get("fingerprint")
    if isinstance(old, dict):  # written before `n_genes` was renamed `n_top_genes`: the same setting
        old = rename_legacy_keys(old)
    if old != fingerprint:
        differ = sorted(k for k in set(fingerprint) | set(old or {}) if (old or {}).get(k) != fingerprint.get(k))
        if "data" in differ and isinstance((old or {}).get("data"), dict) and isinstance(fingerprint["data"], dict):
            parts = sorted(k for k in fingerprint["data"] if old["data"].get(k) != fingerprint["data"].get(k))
            differ[differ.index("data")] = f"data ({', '.join(parts)})" if parts else "data"
        raise ValueError(
            f"`resume_dir`={str(resume)!r} holds a result of {name!r} fold {f} from a different run "
            f"(differs in: {', '.join(differ) or 'unrecorded settings'}): pass a new `resume_dir` or delete {p}."
        )
    logger.info("resume: %s fold %d already done (%s)", name, f, p)
    return done


def save_done(
    resume: Path | None, name: str, f: int, rows: list[dict], per_gene: pd.DataFrame, fingerprint: dict
) -> None:
    p = _done_path(resume, name, f)
    if p is None:
        return
    payload = {"fingerprint": fingerprint, "rows": rows, "per_gene": json.loads(per_gene.to_json())}
    try:
        with atomic_path(p) as tmp:
            tmp.write_text(json.dumps(payload, default=float))
    except OSError as err:
        msg = f"`resume_dir`={str(resume)!r}: cannot write {p.name} ({err.strerror or err})"
        raise OSError(err.errno, msg) from None
