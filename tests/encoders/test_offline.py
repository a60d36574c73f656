"""Offline machines: asking for pretrained weights fails within seconds with the remedies, instead of
huggingface_hub's ~50 s of retries."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from genedml.encoders import _encoder
from genedml.encoders._weights import WeightsUnavailableError


@pytest.fixture
def online_mode(monkeypatch):
    """HF_HUB_OFFLINE unset (as on a user's machine) and nothing in the Hugging Face cache."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(_encoder, "hub_has_cached_weights", lambda repo: False)


def test_unreachable_hub_fails_fast_with_remedies(online_mode, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://genedml-no-such-host.invalid")
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        _encoder.create_encoder("resnet18", pretrained=True, device="cpu")
    assert time.perf_counter() - t0 < 5 * _encoder.HUB_PROBE_TIMEOUT_S  # the probe's bound, never ~50 s of retries
    msg = str(info.value)
    assert "genedml-no-such-host.invalid" in msg and "unreachable" in msg
    assert "pretrained=False" in msg and "weights=" in msg and "HF_TOKEN" in msg


def test_probe_times_out_on_a_silent_host(monkeypatch):
    """A host that accepts no connection within the timeout counts as unreachable (bounded wait)."""

    def slow_connect(*args, **kwargs):
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", slow_connect)
    t0 = time.perf_counter()
    reason = _encoder.hub_unreachable(timeout=0.5)
    assert time.perf_counter() - t0 < 2.0
    assert reason is not None and "did not answer within" in reason


def test_probe_passes_when_the_hub_answers(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer_once() -> None:
        try:
            server.accept()[0].close()
        except OSError:  # the test closed the socket first: nothing left to answer
            pass

    threading.Thread(target=answer_once, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        assert _encoder.hub_unreachable(timeout=2.0) is None
    finally:
        server.close()


def test_offline_flag_is_checked_before_any_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_encoder, "hub_has_cached_weights", lambda repo: False)
    monkeypatch.setattr(_encoder, "hub_unreachable", lambda *a, **k: pytest.fail("probed although HF_HUB_OFFLINE=1"))
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE is set"):
        _encoder.create_encoder("resnet18", pretrained=True, device="cpu")
