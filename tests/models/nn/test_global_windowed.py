"""Windowed attention in the global encoder: exact when one window covers the section, local otherwise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from _nn_helpers import IN_DIM, N_GENES, grid_positions, make_batch, tiny_config

from genedml.models._config import GeneDMLConfig
from genedml.models.nn import GeneDMLNet
from genedml.models.nn._global import GlobalEncoder, grid_index, window_partition

DIM = 8


def _pair(depth: int = 2, **windowed) -> tuple[GlobalEncoder, GlobalEncoder]:
    """A full-attention encoder and a windowed one with the same weights (eval mode, no dropout)."""
    torch.manual_seed(0)
    full = GlobalEncoder(DIM, depth, 2, 16, 0.0, attention="full").eval()
    win = GlobalEncoder(DIM, depth, 2, 16, 0.0, attention="windowed", **windowed).eval()
    win.load_state_dict(full.state_dict())
    return full, win


def _section(height: int, width: int, *, drop: tuple[int, ...] = (), seed: int = 0):
    pos = grid_positions(height, width, drop=drop, seed=seed)
    return torch.randn(pos.shape[0], DIM, generator=torch.Generator().manual_seed(seed)), pos


@pytest.mark.parametrize("window", [12, 13, 40])
def test_one_window_covering_the_section_equals_full_attention(window):
    full, win = _pair(depth=3, window=window)  # depth 3: the shifted layer must not split a covering window
    x, pos = _section(12, 9, drop=(0, 5, 17, 50, 51, 52))
    with torch.no_grad():
        torch.testing.assert_close(win(x, pos), full(x, pos), rtol=1e-5, atol=1e-6)


def test_gradients_match_full_attention_when_one_window_covers_the_section():
    full, win = _pair(window=16)
    x, pos = _section(6, 7, drop=(3, 4))
    grads = []
    for enc in (full, win):
        xi = x.clone().requires_grad_(True)
        enc(xi, pos).square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_auto_is_full_up_to_the_threshold_and_windowed_above():
    torch.manual_seed(0)
    auto = GlobalEncoder(DIM, 2, 2, 16, 0.0, attention="auto", window=4, full_max_spots=100).eval()
    full, win = _pair(window=4)
    full.load_state_dict(auto.state_dict())
    win.load_state_dict(auto.state_dict())
    assert not auto.uses_windows(100) and auto.uses_windows(101)
    small, big = _section(10, 10), _section(11, 11, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(auto(*small), full(*small), rtol=0, atol=0)
        torch.testing.assert_close(auto(*big), win(*big), rtol=0, atol=0)
        assert not torch.allclose(auto(*big), full(*big), atol=1e-3)  # a window smaller than the grid is local


def test_a_spot_sees_only_its_window():
    # one layer, no shift: the output of a spot is its window's attention plus the 3×3 PEG over neighbouring
    # cells, so a spot far from the window's edge does not change when a spot of another window changes
    full, win = _pair(depth=1, window=8)
    x, pos = _section(24, 24)
    index, _, width = grid_index(pos)
    rows, cols = (index // width).tolist(), (index % width).tolist()
    probe = next(i for i in range(len(rows)) if (rows[i], cols[i]) == (12, 12))  # window (1, 1), interior
    inside = next(i for i in range(len(rows)) if (rows[i], cols[i]) == (9, 14))  # same window, outside the PEG reach
    outside = [i for i in range(len(rows)) if not (8 <= rows[i] < 16 and 8 <= cols[i] < 16)]
    with torch.no_grad():
        base = win(x, pos)
        far = x.clone()
        far[outside] += 10 * torch.randn(len(outside), DIM)
        torch.testing.assert_close(win(far, pos)[probe], base[probe], rtol=0, atol=0)
        assert not torch.allclose(full(far, pos)[probe], full(x, pos)[probe], atol=1e-4)  # full attention sees it
        near = x.clone()
        near[inside] += 10 * torch.randn(DIM)  # not a constant: the pre-attention LayerNorm removes those
        assert not torch.allclose(win(near, pos)[probe], base[probe], atol=1e-4)


def test_shifted_windows_spread_information_but_stay_local():
    # two layers: the second attends in windows shifted by half a window, so a spot sees beyond its own window
    # but never further than a window and a half (+ the PEG's one cell)
    _, win = _pair(depth=2, window=8)
    x, pos = _section(40, 40)
    index, _, width = grid_index(pos)
    rows, cols = index // width, index % width
    probe = int(torch.nonzero((rows == 12) & (cols == 12)))
    across = int(torch.nonzero((rows == 17) & (cols == 12)))  # window (2, 1) unshifted: reached by the shift
    far = torch.nonzero((rows - 12).abs().maximum((cols - 12).abs()) > 20).flatten()
    with torch.no_grad():
        base = win(x, pos)
        y = x.clone()
        y[far] += 10 * torch.randn(len(far), DIM)
        torch.testing.assert_close(win(y, pos)[probe], base[probe], rtol=0, atol=0)
        y = x.clone()
        y[across] += 10 * torch.randn(DIM)
        assert not torch.allclose(win(y, pos)[probe], base[probe], atol=1e-4)


def test_padded_windows_match_each_window_run_alone():
    # holes make windows of unequal size (padded with a key mask): each window's output must equal full
    # attention over that window alone (one layer; the PEG conv is zeroed so only attention + FFN remain)
    full, win = _pair(depth=1, window=4)
    for enc in (full, win):
        torch.nn.init.zeros_(enc.peg.conv.weight)
        torch.nn.init.zeros_(enc.peg.conv.bias)
    drop = tuple(range(0, 16 * 10, 3)) + tuple(range(16 * 10, 16 * 12))  # sparse rows, two empty window rows
    x, pos = _section(16, 14, drop=drop)
    index, height, width = grid_index(pos)
    order, chunks = window_partition(index, height, width, 4)
    assert any(c.slots is not None for c in chunks), "the test needs padded windows"
    assert sorted(order.tolist()) == list(range(len(order)))
    with torch.no_grad():
        out = win(x, pos)
        wid = (index // width // 4) * 100 + (index % width // 4)
        for w in torch.unique(wid):
            members = torch.nonzero(wid == w).flatten()
            torch.testing.assert_close(out[members], full(x[members], pos[members]), rtol=1e-5, atol=1e-6)


def test_chunks_bound_memory_and_cover_every_spot_once():
    index, height, width = grid_index(grid_positions(30, 30, drop=tuple(range(0, 900, 7))))
    order, chunks = window_partition(index, height, width, 5, shift=True, max_logits=3 * 25 * 25)
    assert len(chunks) > 1 and all(c.n_windows * c.length**2 <= 3 * 25 * 25 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].stop == len(order) == len(index)
    assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))
    lengths = [c.length for c in chunks]
    assert lengths == sorted(lengths, reverse=True)
    assert torch.equal(torch.sort(order).values, torch.arange(len(index)))


def test_permuting_the_spots_permutes_the_output():
    _, win = _pair(window=5)
    x, pos = _section(17, 13, drop=(4, 30, 31))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(win(x[perm], pos[perm]), win(x, pos)[perm], rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_the_option():
    with pytest.raises(ValueError, match=r"`attention` must be one of \['auto', 'full', 'windowed'\]"):
        GlobalEncoder(DIM, 1, 2, 16, 0.0, attention="local")
    with pytest.raises(ValueError, match="`window` must be a positive integer"):
        GlobalEncoder(DIM, 1, 2, 16, 0.0, window=0)
    with pytest.raises(ValueError, match="`full_max_spots` must be a positive integer"):
        GlobalEncoder(DIM, 1, 2, 16, 0.0, full_max_spots=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"global_attention": "swin"}, r"`global_attention` must be one of \['auto', 'full', 'windowed'\]"),
        ({"global_window": 0}, "`global_window` must be a positive integer"),
        ({"global_window": 2.5}, "`global_window` must be a positive integer"),
        ({"global_full_max_spots": -1}, "`global_full_max_spots` must be a positive integer"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        GeneDMLConfig(**overrides)


def test_config_defaults_keep_small_sections_exact_and_old_dicts_load():
    cfg = GeneDMLConfig()
    assert (cfg.global_attention, cfg.global_window, cfg.global_full_max_spots) == ("auto", 32, 4096)
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("global_") or k[7:] in ("depth", "heads")}
    old = {k: v for k, v in old.items() if k not in ("global_window", "global_full_max_spots", "global_attention")}
    assert GeneDMLConfig.from_dict(old) == GeneDMLConfig(**{k: v for k, v in old.items() if k != "head_hidden"})
    d = GeneDMLConfig(global_attention="windowed", global_window=16).to_dict()
    assert GeneDMLConfig.from_dict(d).global_attention == "windowed" and d["global_window"] == 16
    net = GeneDMLNet(tiny_config(), in_dim=IN_DIM, n_genes=N_GENES)
    assert net.global_encoder.attention == "auto" and net.global_encoder.full_max_spots == 4096


def test_gene_dml_forward_and_encode_sections_with_windowed_attention():
    torch.manual_seed(0)
    full = GeneDMLNet(tiny_config(global_attention="full"), in_dim=IN_DIM, n_genes=N_GENES).eval()
    one = GeneDMLNet(tiny_config(global_attention="windowed", global_window=8), in_dim=IN_DIM, n_genes=N_GENES)
    small = GeneDMLNet(tiny_config(global_attention="windowed", global_window=2), in_dim=IN_DIM, n_genes=N_GENES)
    for net in (one, small):
        net.load_state_dict(full.state_dict())
        net.eval()
    b = make_batch()
    with torch.no_grad():
        ref = full(*b.inputs())
        same = one(*b.inputs())
        torch.testing.assert_close(same.pred, ref.pred, rtol=1e-5, atol=1e-6)
        tokens = small.encode_sections(b.section_feats, b.section_pos)
        assert [t.shape for t in tokens] == [(f.shape[0], IN_DIM) for f in b.section_feats]
        out = small(*b.inputs(), section_tokens=tokens)
        torch.testing.assert_close(out.pred, small(*b.inputs()).pred)
        assert not torch.allclose(out.pred, ref.pred, atol=1e-4)  # 2×2 windows on a 3×4 grid are local
    small.train()
    loss = small(*b.inputs()).pred.square().mean()
    loss.backward()
    assert all(p.grad is not None for p in small.global_encoder.layers[1].parameters())


def test_checkpoint_round_trip_keeps_the_setting(tmp_path):
    import genedml as gd
    from genedml.models import GeneDML

    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    config = {"preset": "cpu", "global_attention": "windowed", "global_window": 3, "global_full_max_spots": 50}
    model = GeneDML(config, {"max_epochs": 1, "batch_size": 32}, encoder="test_resnet", pretrained=False, target_px=32)
    model.setup(sdata, n_top_genes=10).train(progress=False)
    assert model.net.global_encoder.uses_windows(2)
    path = model.save(tmp_path / "m.pt")
    loaded = GeneDML.load(path, sdata=sdata)
    c = loaded.config
    assert (c.global_attention, c.global_window, c.global_full_max_spots) == ("windowed", 3, 50)
    assert loaded.net.global_encoder.window == 3
    np.testing.assert_array_equal(loaded.predict(sdata), model.predict(sdata))


def test_windowed_attention_never_forms_a_spots_by_spots_matrix(monkeypatch):
    import torch.nn.functional as F

    from genedml.models.nn import _global

    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append(tuple(q.shape))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(_global, "_LOGIT_BUDGET", 2 * 4 * 25 * 25)  # 2 heads: at most 4 windows of 25 per call
    _, win = _pair(window=5)
    x, pos = _section(40, 40, drop=tuple(range(0, 1600, 11)))
    with torch.no_grad():
        win(x, pos)
    assert len(seen) > 2 and sum(b * n for b, _, n, _ in seen) >= 2 * x.shape[0]  # chunks; every spot, 2 layers
    assert all(length <= 25 and batch * heads * length**2 <= 2 * 4 * 25 * 25 for batch, heads, length, _ in seen)
