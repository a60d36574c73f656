"""ST-Net: a CNN fine-tuned end to end on each spot's window, with a linear gene head and MSE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..._keys import Keys
from ..._logging import logger
from ..._utils import resolve_progress
from ..._validators import assert_positive_int
from ...dataloaders import ImageSpotData
from .._network import NetworkModel
from .._train_config import TrainConfig
from ._common import Baseline

if TYPE_CHECKING:
    import torch
    from spatialdata import SpatialData

__all__ = ["STNetBaseline"]


class STNetBaseline(NetworkModel, Baseline):
    """ST-Net (He et al., Nat. Biomed. Eng. 2020): a CNN fine-tuned on the spot's window, linear head, MSE loss.

    The backbone is the encoder named by ``backbone`` (or by the shared ``encoder`` setting), built through the
    genedml encoder registry with its pretrained weights, then **trained end to end** — nothing is cached. Windows
    are cut once per section with `gd.features.spot_windows` (same geometry as the frozen features: ``target_px`` /
    ``target_um`` / ``target_mpp``), kept in memory as ``uint8``, normalised with the backbone's pretrained
    configuration and augmented with a random one of the 8 flips/rotations per spot (``train_config.augment``).
    The head's bias starts at the training mean. Training runs with Lightning (Adam at ``train_config.lr``, early
    stopping on validation PCC(A)).

    **Deviations:** the paper fine-tunes an ImageNet DenseNet121 (``backbone="densenet121"``) with its own
    optimiser settings; the default here is a ResNet18 for CPUs. **Cost:** ``H·W·3`` bytes per spot in memory
    (150 kB at 224 px; ~2 GB for HER2ST's 13,620 spots) and a full CNN forward and backward pass per spot and
    epoch — about ``3×`` the encoder's embedding cost per epoch; use a GPU, ``image_px`` or a small backbone on CPUs.

    Parameters
    ----------
    train_config
        A `TrainConfig` or dict.
    backbone
        Encoder to fine-tune (registry name, timm name or ``hf-hub:`` id); replaces ``encoder`` and drops
        ``weights``. ``None``: the ``encoder`` setting itself.
    image_px
        Resize windows to this side before the backbone (``None``: as cut, or the backbone's fixed input size).
    **encoder_kwargs
        Encoder settings of `SpotModel` (``pretrained`` decides whether the backbone starts from pretrained
        weights).

    Examples
    --------
    >>> import genedml as gd
    >>> from genedml.models import STNetBaseline
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = STNetBaseline({"max_epochs": 1, "batch_size": 32}, backbone="test_resnet", pretrained=False,
    ...                       target_px=32)
    >>> pred = model.setup(sdata, n_top_genes=10).train(progress=False).predict(sdata)
    >>> pred.shape
    (98, 10)
    """

    method = "stnet"
    param_names = ("backbone", "image_px")
    scales: tuple[str, ...] = ()
    uses_frozen_encoder = False  # the fine-tuned backbone's weights are in the checkpoint itself

    def __init__(
        self,
        train_config: TrainConfig | dict | None = None,
        *,
        backbone: str | None = "resnet18",
        image_px: int | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        if backbone is not None:
            if not isinstance(backbone, str) or not backbone:
                raise ValueError(f"`backbone` must be an encoder name or None, got {backbone!r}.")
            encoder_kwargs["encoder"] = backbone
            encoder_kwargs.pop("weights", None)
        super().__init__(train_config, **encoder_kwargs)
        if image_px is not None:
            assert_positive_int(image_px, name="image_px")
        self.backbone, self.image_px = backbone, image_px
        self.net = None

    # ------------------------------------------------------------------------------------------- data
    def _spot_data(
        self, sdata: SpatialData, *, sections: list[str], table_key: str | None, progress: bool | None, y=None
    ) -> ImageSpotData:
        """Cut the target windows of ``sections`` (no encoder runs here)."""
        from ... import io as gio

        table = gio.get_table(sdata, table_key=table_key)
        sec_col = table.obs[Keys.section].astype(str).to_numpy()
        rows = np.flatnonzero(np.isin(sec_col, sections))
        images = _cut_windows(sdata, self.encoder, sec_col[rows], sections, table_key, progress)
        names = sorted(set(sec_col[rows]))
        n = len(rows)
        self._record_patients(sdata, table_key)
        return ImageSpotData(
            target=None,
            tiles=np.zeros((0, 0), np.float32),
            global_index=np.zeros(n, np.int64),
            neighbor_index=np.zeros((n, 0), np.int64),
            pos=table.obs[[Keys.array_row, Keys.array_col]].to_numpy()[rows].astype(np.int64),
            section=np.searchsorted(np.array(names), sec_col[rows]),
            section_names=names,
            y=None if y is None else np.asarray(y, dtype=np.float32),
            images=images,
        )

    def _after_setup(self) -> None:
        import torch

        self._build_net(pretrained_weights=True)
        self.net.init_bias(torch.from_numpy(self._train_data.y.mean(axis=0)))

    def _build_net(self, *, pretrained_weights: bool) -> None:
        import timm.data

        from ..nn._baselines import STNetNet

        backbone, info = _backbone(self.encoder, pretrained_weights=pretrained_weights)
        cfg = timm.data.resolve_data_config({}, model=backbone)
        fixed = info.pop("fixed_px")
        if self.encoder_info_ is None:
            self.encoder_info_ = info
        self.in_dim_ = info["dim"]
        self.net = STNetNet(
            backbone,
            num_features=info["dim"],
            n_genes=len(self.genes_),
            mean=cfg["mean"],
            std=cfg["std"],
            image_px=self.image_px or fixed,
        )

    # ------------------------------------------------------------------------------------------- train
    def train(self, *, progress: bool | None = None) -> STNetBaseline:
        """Fine-tune backbone and head with Lightning; the best-validation weights are kept."""
        import torch

        from ..train import ImageDataModule, ImageTrainingPlan

        self._fit_net(ImageTrainingPlan, torch.nn.MSELoss(), ImageDataModule, progress=progress)
        return self

    def _predict_data(self, data: ImageSpotData) -> np.ndarray:
        import torch

        net = self.net.eval()
        out = np.zeros((len(data), len(self.genes_)), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(data), 128):
                out[i : i + 128] = net(torch.from_numpy(data.images[i : i + 128])).float().numpy()
        return out

    def check_compatible(self, sdata: SpatialData, *, table_key: str | None = None) -> None:
        """Raise ``ValueError`` if ``sdata`` has counts but lacks model genes (no frozen features are involved)."""
        from ... import io as gio

        table = gio.get_table(sdata, table_key=table_key)
        missing = [g for g in self.genes_ if g not in table.var_names] if table.n_vars else []
        if missing:
            raise ValueError(f"the data lacks {len(missing)} of the model's {len(self.genes_)} genes: {missing[:5]}.")

    def _empty_net(self, state: dict[str, torch.Tensor]) -> None:
        self._build_net(pretrained_weights=False)


def _cut_windows(sdata, enc, spot_sections: np.ndarray, sections: list[str], table_key, progress) -> np.ndarray:
    """``uint8`` windows ``(n, px, px, 3)`` of the spots, in table order."""
    from ... import features

    images = None
    for s in _progress(sections, progress):
        w = features.spot_windows(
            sdata,
            section=s,
            scale="target",
            target_px=enc.target_px,
            target_um=enc.target_um,
            target_mpp=enc.target_mpp,
            table_key=table_key,
        )
        if images is None:
            images = np.zeros((len(spot_sections), *w.images.shape[1:]), np.uint8)
        images[spot_sections == s] = w.images
    if images is None:
        images = np.zeros((0, enc.target_px, enc.target_px, 3), np.uint8)
    logger.info("ST-Net: %d windows of %s px in memory (%.1f MB)", len(images), images.shape[1:3], images.nbytes / 1e6)
    return images


def _progress(items: list[str], progress: bool | None):
    if not resolve_progress(progress) or len(items) < 2:
        return items
    from ..._utils import tqdm_class

    return tqdm_class()(items, desc="cut windows", leave=False)


def _backbone(enc, *, pretrained_weights: bool) -> tuple[torch.nn.Module, dict]:
    """The timm model to fine-tune: pretrained as the settings say, or the bare architecture (to load a checkpoint)."""
    from ...encoders import build_architecture as _build_architecture
    from ...encoders import create_encoder
    from ...encoders import resolve_spec as _resolve_spec

    if pretrained_weights:
        frozen = create_encoder(enc.name, pretrained=enc.pretrained, weights=enc.weights, device="cpu")
        model, identity, weights_hash = frozen.model, frozen.identity, frozen.weights_hash
        fixed = frozen.fixed_input_size
    else:
        spec = _resolve_spec(enc.name)
        model, identity, weights_hash, fixed = _build_architecture(spec), spec.name, None, None
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        if pcfg.get("fixed_input_size") and not getattr(model, "dynamic_img_size", False):
            fixed = tuple(int(v) for v in pcfg["input_size"][1:])
    info = {
        "encoder": identity,
        "weights_hash": weights_hash,
        "dim": int(model.num_features),
        "n_tokens": None,
        "architecture": type(model).__name__,
        "fine_tuned": True,
        "fixed_px": None if fixed is None else int(fixed[0]),
    }
    return model, info
