"""Shared pieces of the files/state and training catalogues (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

#: the smallest Gene-DML fit that exercises every part (seconds on a CPU)
FIT_KW = dict(
    n_top_genes=10,
    encoder="test_resnet",
    config="cpu",
    max_epochs=1,
    batch_size=32,
    patience=None,
    progress=False,
    target_px=32,
)


class Evil:
    """Unpickling this object writes ``marker``: the stand-in for code hidden in a weights or model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def write_evil_pickle(path: Path, marker: Path, *, torch_zip: bool) -> Path:
    """A weights/model file whose unpickling runs code: a torch zip file or a raw pickle."""
    if torch_zip:
        import torch

        torch.save({"state_dict": {"w": Evil(marker)}, "format": "genedml-model/1"}, path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": Evil(marker)}))
    return path


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, or of every file under a folder (names and bytes), to prove it was not changed."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        h.update(str(q.relative_to(p) if p.is_dir() else q.name).encode())
        h.update(q.read_bytes())
    return h.hexdigest()


def random_weights_file(path: Path, *, seed: int, name: str = "test_resnet") -> Path:
    """A safetensors file of ``name``'s architecture with seeded random weights."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
