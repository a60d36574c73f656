"""``gd.tl.pretrain_encoder``: adapt an image encoder to the user's own slides by self-supervised learning."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._logging import logger
from .._utils import atomic_path, resolve_progress
from .._validators import assert_in_range, assert_one_of, assert_positive_int

if TYPE_CHECKING:
    import pandas as pd
    from spatialdata import SpatialData

__all__ = ["PretrainResult", "pretrain_encoder"]

_METHODS = ("simclr", "byol", "dino")


@dataclass
class PretrainResult:
    """What :func:`pretrain_encoder` leaves behind."""

    path: Path
    """The adapted weights (``.safetensors``; pass as ``weights=`` with the same ``encoder``)."""
    history: pd.DataFrame
    """One row per epoch: ``epoch``, mean ``loss``, ``tiles`` trained on, ``tiles_per_s`` (wall), wall
    ``seconds``, process ``cpu_seconds`` (all threads), final ``lr``."""
    params: dict[str, Any] = field(default_factory=dict)
    """Settings of the run (also stored in the file's metadata)."""


def pretrain_encoder(
    sdata: SpatialData,
    *,
    out: str | os.PathLike,
    encoder: str = "resnet18",
    method: str = "simclr",
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    target_px: int = 224,
    target_um: float | None = None,
    target_mpp: float | None = None,
    epochs: int = 10,
    tiles_per_epoch: int = 2048,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    min_tissue: float = 0.5,
    sections: Sequence[str] | None = None,
    table_key: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    device: str | None = None,
    seed: int = 0,
    max_minutes: float | None = None,
    progress: bool | None = None,
) -> PretrainResult:
    """Adapt an encoder to the slides of ``sdata`` by self-supervised learning and save its weights.

    Tissue tiles are drawn around the spots of every section (shifted by up to half a window, kept when at least
    ``min_tissue`` of their pixels are neither white background nor black padding), at the same µm geometry as
    :func:`genedml.tl.embed` with the same ``target_px`` / ``target_um`` / ``target_mpp``; each epoch draws a fresh
    seeded sample of ``tiles_per_epoch`` tiles. Two views of each tile come from histology-safe augmentations
    (random resized crop, flips and 90° rotations, stain jitter in HED space, small brightness/contrast changes,
    Gaussian blur; never colour inversion or grayscale). The backbone is trained with the heads and loss of
    ``method`` from the `lightly <https://docs.lightly.ai/self-supervised-learning/>`_ library in a Lightning
    loop (AdamW, cosine learning rate), checkpointed every epoch. The backbone's weights are then written to
    ``out``, with keys of the timm model, so ``gd.tl.embed(sdata, encoder=encoder, weights=out)`` uses them.

    Needs the optional dependency ``lightly`` (``pip install 'genedml[ssl]'``).

    Parameters
    ----------
    sdata
        SpatialData with section images and spots (an H&E-only slide: run :func:`genedml.pp.spot_grid` first).
    out
        Output ``.safetensors`` file; written atomically, refused when it exists unless ``overwrite``.
    encoder
        Encoder name (registry, timm name); the architecture that is adapted and later loaded with ``weights=``.
    method
        ``"simclr"`` (contrastive NT-Xent), ``"byol"`` (momentum target, no negatives) or ``"dino"``
        (self-distillation).
    weights
        Local weights file to start from (e.g. a pathology checkpoint); overrides ``pretrained``.
    pretrained
        Start from the encoder's pretrained weights (ImageNet for ``"resnet18"``; they must be downloadable or
        cached); ``False`` starts from random weights, which works offline.
    target_px
        Tile side in pixels fed to the model.
    target_um
        Physical tile side in µm (resampled to ``target_px``); ``None`` with ``target_mpp=None`` means native pixels.
    target_mpp
        Tile resolution in µm/px.
    epochs
        Total epochs (a resumed run continues up to this number).
    tiles_per_epoch
        Tiles drawn per epoch.
    batch_size
        Tiles per step (two views each); at least 2.
    lr
        Peak AdamW learning rate (cosine decay to 1 % of it).
    weight_decay
        AdamW weight decay.
    min_tissue
        Smallest tissue fraction of a tile, in ``[0, 1]``.
    sections
        Sections to draw tiles from; ``None`` means all.
    table_key
        Table with the spots; ``None`` means the only table.
    checkpoint_dir
        Where Lightning's checkpoints go (``last.ckpt`` every epoch); default: ``<out without suffix>.ckpt/``
        beside ``out``. Kept after the run so that it can be resumed or extended.
    resume
        ``True`` continues from ``checkpoint_dir/last.ckpt``; a path continues from that checkpoint; ``False``
        starts afresh (refused when ``checkpoint_dir`` already holds a checkpoint, unless ``overwrite``). The
        checkpoint must come from the same encoder, method, tile geometry and seed. When ``out`` exists from the
        earlier run, pass ``overwrite=True`` too.
    overwrite
        Replace an existing ``out`` and start over an existing checkpoint.
    device
        ``"cpu"``, ``"cuda"``, ``"auto"``; ``None`` follows ``gd.settings.device``. Mixed precision on a GPU.
    seed
        Seeds the heads, the tile samples, their order and the augmentations (one stream per epoch, so a resumed
        run draws what an uninterrupted one would).
    max_minutes
        Wall-clock budget for the training (resumed runs included). The learning-rate and momentum schedules
        follow whichever of ``epochs`` and the budget runs out first, and training stops when the budget is spent,
        so a slow machine still completes its schedule, on fewer tiles; ``None`` means no limit.
    progress
        Show Lightning's progress bar; ``None`` follows ``gd.settings.progress_bar``.

    Returns
    -------
    :class:`~genedml.tl.PretrainResult` with the weights ``path``, the per-epoch ``history`` and the ``params``.

    Examples
    --------
    >>> import tempfile, genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> out = tempfile.mkdtemp() + "/adapted.safetensors"
    >>> res = gd.tl.pretrain_encoder(sdata, out=out, encoder="test_resnet", pretrained=False, target_px=32,
    ...                              epochs=1, tiles_per_epoch=16, batch_size=8, progress=False)
    >>> list(res.history.columns)
    ['epoch', 'loss', 'tiles', 'tiles_per_s', 'seconds', 'cpu_seconds', 'lr']
    >>> gd.tl.embed(sdata, encoder="test_resnet", weights=res.path, target_px=32, scales=["global"])
    """
    from .._data_model import select_sections
    from ..features import WindowSpec

    out_path, ckpt_dir, ckpt_path = _validate(
        out, method, epochs, tiles_per_epoch, batch_size, lr, weight_decay, min_tissue, seed, max_minutes,
        checkpoint_dir, resume, overwrite,
    )  # fmt: skip
    spec = WindowSpec.resolve(target_px=target_px, target_um=target_um, target_mpp=target_mpp)
    secs = select_sections(sdata, sections, table_key=table_key)
    from ..models.nn import import_lightly

    import_lightly()
    from ..dataloaders import TissueTiles
    from ..encoders import create_encoder, resolve_device

    dev = resolve_device(device)
    enc = create_encoder(encoder, pretrained=pretrained, weights=weights, device="cpu")
    tiles = TissueTiles.from_sdata(sdata, sections=secs, spec=spec, table_key=table_key, min_tissue=min_tissue)
    params = {
        "encoder": enc.identity,
        "architecture": enc.spec.architecture,
        "method": method,
        "start_weights": enc.weights_hash,
        "window": spec.to_dict(),
        "sections": secs,
        "epochs": int(epochs),
        "tiles_per_epoch": int(tiles_per_epoch),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "min_tissue": float(min_tissue),
        "seed": int(seed),
        "max_minutes": None if max_minutes is None else float(max_minutes),
    }
    history, state = _train(enc, tiles, params, dev, ckpt_dir, ckpt_path, resolve_progress(progress))
    _write(state, out_path, params)
    import pandas as pd

    hist = pd.DataFrame(history, columns=["epoch", "loss", "tiles", "tiles_per_s", "seconds", "cpu_seconds", "lr"])
    if len(hist):
        logger.info(
            "pretrain_encoder: %s %s, %d epochs, loss %.4f → %.4f, %.1f tiles/s; weights in %s",
            method, enc.identity, len(hist), hist["loss"].iloc[0], hist["loss"].iloc[-1],
            hist["tiles_per_s"].mean(), out_path,
        )  # fmt: skip
    return PretrainResult(path=out_path, history=hist, params=params)


def _validate(
    out, method, epochs, tiles_per_epoch, batch_size, lr, weight_decay, min_tissue, seed, max_minutes,
    checkpoint_dir, resume, overwrite,
) -> tuple[Path, Path, Path | None]:  # fmt: skip
    if not isinstance(out, str | os.PathLike) or not str(out):
        raise ValueError(f"`out` must be a path to a '.safetensors' file, got {out!r}.")
    out_path = Path(out).expanduser()
    if out_path.suffix != ".safetensors":
        raise ValueError(f"`out`={str(out)!r} must end in '.safetensors' (the format `weights=` loads safely).")
    if out_path.is_dir():
        raise ValueError(f"`out`={str(out)!r} is a directory; pass a file path ending in '.safetensors'.")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"`out`={str(out)!r} exists; pass `overwrite=True` to replace it.")
    assert_one_of(method, _METHODS, name="method")
    for name, val in (("epochs", epochs), ("tiles_per_epoch", tiles_per_epoch), ("batch_size", batch_size)):
        assert_positive_int(val, name=name)
    if batch_size < 2 or batch_size > tiles_per_epoch:
        raise ValueError(
            f"`batch_size`={batch_size} must be at least 2 (two tiles to contrast) and at most "
            f"`tiles_per_epoch`={tiles_per_epoch}."
        )
    for name, val in (("lr", lr), ("weight_decay", weight_decay), ("min_tissue", min_tissue)):
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise ValueError(f"`{name}` must be a number, got {val!r}.")
    if not lr > 0:
        raise ValueError(f"`lr` must be positive, got {lr!r}.")
    assert_in_range(weight_decay, name="weight_decay", low=0.0)
    assert_in_range(min_tissue, name="min_tissue", low=0.0, high=1.0)
    if max_minutes is not None:
        assert_in_range(max_minutes, name="max_minutes", low=0.0, inclusive=False)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
    ckpt_dir = Path(checkpoint_dir).expanduser() if checkpoint_dir is not None else out_path.with_suffix(".ckpt")
    last = ckpt_dir / "last.ckpt"
    if resume is True:
        if not last.is_file():
            raise FileNotFoundError(f"`resume=True`: no checkpoint {str(last)!r}; pass `resume=False` to start.")
        return out_path, ckpt_dir, last
    if isinstance(resume, str | os.PathLike):
        ckpt = Path(resume).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"`resume`={str(resume)!r} is not a checkpoint file.")
        return out_path, ckpt_dir, ckpt
    if resume is not False:
        raise ValueError(f"`resume` must be True, False or a checkpoint path, got {resume!r}.")
    if last.is_file() and not overwrite:
        raise FileExistsError(
            f"`checkpoint_dir`={str(ckpt_dir)!r} already holds a checkpoint: pass `resume=True` to continue it or "
            "`overwrite=True` to start over."
        )
    return out_path, ckpt_dir, None


def _train(enc, tiles, params: dict, dev, ckpt_dir: Path, ckpt_path: Path | None, progress: bool):
    import warnings

    import lightning as L

    from ..models.nn import HistoAugmentConfig, SSLConfig, SSLNet
    from ..models.train import SSLHistory, SSLPlan, TileDataModule, build_ssl_trainer, quiet_lightning

    L.seed_everything(params["seed"], workers=False, verbose=False)
    backbone = enc.model
    backbone.requires_grad_(True).train(True)  # the Encoder wrapper froze it in eval mode
    cfg = enc.data_config
    net = SSLNet(backbone, enc.num_features, SSLConfig(method=params["method"]), max_epochs=params["epochs"])
    plan = SSLPlan(
        net,
        mean=cfg["mean"],
        std=cfg["std"],
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        max_epochs=params["epochs"],
        augment=HistoAugmentConfig(),
        hparams={k: params[k] for k in ("encoder", "architecture", "method", "window", "seed")},
        max_minutes=params["max_minutes"],
    )
    dm = TileDataModule(
        tiles.sample, tiles_per_epoch=params["tiles_per_epoch"], batch_size=params["batch_size"], seed=params["seed"]
    )
    accelerator = {"cuda": "gpu"}.get(dev.type, dev.type)
    precision = "16-mixed" if accelerator == "gpu" else "32-true"
    history = SSLHistory()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with quiet_lightning():
        trainer = build_ssl_trainer(
            max_epochs=params["epochs"],
            ckpt_dir=ckpt_dir,
            accelerator=accelerator,
            precision=precision,
            progress=progress,
            history=history,
        )
        with warnings.catch_warnings():
            # the directory was checked in `_validate`: it holds our own checkpoint (resume or overwrite)
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            trainer.fit(plan, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    return history.rows, state


def _write(state: dict, out_path: Path, params: dict) -> None:
    import json

    from safetensors.torch import save_file

    from .._version import __version__

    meta = {"format": "pt", "genedml_version": str(__version__), "genedml_pretrain": json.dumps(params)}
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(out_path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file, not the private mode of the temporary directory
