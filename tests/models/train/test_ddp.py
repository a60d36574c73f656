"""Distributed training: Lightning DDP on CPU with 2 processes (gloo) trains and restores the best weights."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import genedml as gd
    gd.settings.cachedir = sys.argv[1]
    gd.settings.progress_bar = False
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    model = gd.tl.fit(
        sdata, n_top_genes=12, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1, batch_size=16,
        patience=None, accelerator="cpu", devices=2, strategy="ddp", progress=False,
    )
    pred = model.predict(sdata)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    out = {"rank": rank, "shape": list(pred.shape), "finite": bool(np.isfinite(pred).all()),
           "loss": model.history_[-1]["train_loss"] if model.history_ else None,
           "hash": model.model_hash}
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as fh:
        json.dump(out, fh)
    """
)


def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for o in outs:
        assert o["shape"][1] == 12 and o["finite"]
        assert o["loss"] is not None and o["loss"] == o["loss"]  # finite, not NaN
    assert outs[0]["hash"] == outs[1]["hash"]  # both ranks restored the same weights
