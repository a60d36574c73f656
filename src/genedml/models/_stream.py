"""Gene-DML prediction that streams: bounded memory at any number of spots.

A section's global tokens come from the global encoder over all its spots. Up to `BAND_SPOTS` spots (or with full
attention) they are computed at once, as in training. Above, with windowed attention, the section is encoded band
by band: horizontal bands of grid rows, each widened by the encoder's receptive field
(`GlobalEncoder.receptive_rows`) on both sides, so the band's core rows get the whole section's tokens (to float
tolerance) while only the band is in memory. The tokens go to a scratch file; predictions then run in chunks of
table rows, reading only the chunk's features and tokens.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..dataloaders import SpotData

__all__ = ["BAND_SPOTS", "CHUNK_SPOTS", "band_plan", "iter_predictions"]

BAND_SPOTS = 3 << 17  # spots of one band of the global encoder (≈ 190 MiB per float32 copy at width 128)
CHUNK_SPOTS = 1 << 16  # table rows per prediction chunk
_BATCH = 512  # spots per network forward


def band_plan(rows: np.ndarray, *, margin: int, max_spots: int) -> list[tuple[int, int, int, int]]:
    """Bands of grid rows covering ``rows`` (the spots' grid rows, ``≥ 0``).

    Returns ``(lo_ext, lo, hi, hi_ext)`` per band: the core rows ``[lo, hi)`` partition the grid, and the band
    encoded for them is ``[lo_ext, hi_ext)`` = the core widened by ``margin`` rows on each side (clipped). Each
    band holds at most ``max_spots`` spots, except that a core is never thinner than ``margin`` rows (so the margins
    at most triple the work) and the last core runs to the grid's end.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    height = int(rows.max()) + 1
    cum = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=height))])
    out = []
    lo = 0
    while lo < height:
        lo_ext = max(0, lo - margin)
        last = int(np.searchsorted(cum, cum[lo_ext] + max_spots, side="right")) - 1  # rows [lo_ext, last) fit
        hi = height if last >= height else min(height, max(lo + max(1, margin), last - margin))
        out.append((lo_ext, lo, hi, min(height, hi + margin)))
        lo = hi
    return out


def _section_tokens(net, data: SpotData, code: int, scratch: str) -> torch.Tensor | str:
    """Global tokens ``(n_s, width)`` of section ``code`` in its row order: a tensor, or the path of a ``.npy``."""
    import torch

    rows = data.section_rows(code)
    pos = np.asarray(data.pos[rows], dtype=np.int64)
    enc = net.global_encoder
    if len(rows) <= BAND_SPOTS or not enc.uses_windows(len(rows)):
        feats, p = data._section_inputs(code)
        tokens = net.encode_sections([feats], [p])[0]
        data._section_cache.pop(code, None)  # the batches below read the tokens, not the features
        return tokens
    pos = pos - pos.min(axis=0)
    height, width = (int(v) + 1 for v in pos.max(axis=0))
    by_row = np.argsort(pos[:, 0], kind="stable")
    row_sorted = pos[by_row, 0]
    path = os.path.join(scratch, f"tokens-{code}.npy")
    width_out = net.config.trunk_width(net.in_dim)
    del_me = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(rows), width_out))
    del del_me  # reopened per band so that written pages leave this process
    for lo_ext, lo, hi, hi_ext in band_plan(pos[:, 0], margin=enc.receptive_rows(), max_spots=BAND_SPOTS):
        a, b = np.searchsorted(row_sorted, [lo_ext, hi_ext])
        band = np.sort(by_row[a:b])  # section-local indices, in section order
        x = net._trunk(torch.from_numpy(data.global_rows(rows[band])))  # the raw features are freed at once
        tok = enc(x, torch.from_numpy(pos[band]), band=(lo_ext, height, width))
        del x
        core = (pos[band, 0] >= lo) & (pos[band, 0] < hi)
        mm = np.load(path, mmap_mode="r+")
        mm[band[core]] = tok[torch.from_numpy(core)].float().numpy()
        mm.flush()
        del mm, tok
    return path


def iter_predictions(
    net, data: SpotData, *, chunk: int = CHUNK_SPOTS, bar=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows, pred)``: predictions ``(len(rows), G)`` float32 for consecutive chunks of ``data``'s rows.

    Memory holds one band of the global encoder or one chunk of predictions, never a large section's features.
    """
    import torch

    net = net.eval()
    n = len(data)
    with tempfile.TemporaryDirectory(prefix="genedml-tokens-") as scratch, torch.inference_mode():
        tokens: dict[int, torch.Tensor | str] = {}
        local = np.empty(n, dtype=np.int64)
        for code in range(len(data.section_names)):
            rows = data.section_rows(code)
            local[rows] = np.arange(len(rows))
            tokens[code] = _section_tokens(net, data, code, scratch)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            sec = data.section[rows]
            opened = {  # this chunk's tokens (a file is mapped for the chunk only)
                int(c): tokens[int(c)]
                if not isinstance(tokens[int(c)], str)
                else np.load(tokens[int(c)], mmap_mode="r")
                for c in np.unique(sec)
            }
            out = np.empty((len(rows), net.n_genes), dtype=np.float32)
            for i in range(0, len(rows), _BATCH):
                r = rows[i : i + _BATCH]
                tok = _batch_tokens(opened, local[r], data.section[r])
                b = data.batch(r, with_sections=False)
                inputs = {
                    **b.inputs(),
                    "section_of": torch.zeros(len(r), dtype=torch.long),
                    "spot_of": torch.arange(len(r)),
                }
                out[i : i + len(r)] = net(**inputs, section_tokens=[tok]).pred.float().numpy()
                if bar is not None:
                    bar.update(len(r))
            del opened
            yield rows, out


def _batch_tokens(opened: dict, local: np.ndarray, sec: np.ndarray) -> torch.Tensor:
    """Global tokens ``(B, width)`` of a batch's spots (``local``: their rows within their sections)."""
    import torch

    codes = np.unique(sec)
    if len(codes) == 1:
        return _rows_of(opened[int(codes[0])], local)
    parts = [_rows_of(opened[int(c)], local[sec == c]) for c in codes]
    tok = torch.empty((len(local), parts[0].shape[1]), dtype=parts[0].dtype)
    tok[torch.from_numpy(np.argsort(sec, kind="stable"))] = torch.cat(parts)
    return tok


def _rows_of(t, idx: np.ndarray) -> torch.Tensor:
    import torch

    if isinstance(t, torch.Tensor):
        return t.index_select(0, torch.from_numpy(idx))
    return torch.from_numpy(np.ascontiguousarray(t[idx]))
