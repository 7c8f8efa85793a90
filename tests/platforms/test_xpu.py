"""The XPU plugin: capabilities from its backends, and the paged SDPA backend (device-agnostic
torch) on the CPU against the reference, including tree masks and sliding windows."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import AttentionLayer, CapabilityError, ForwardMode, PlatformConfig
from anyware.runtime import PlatformDriver
from anyware_conformance.paged import build, spec_for
from anyware_xpu.platform import XpuPlatform
from anyware_xpu.sdpa_backend import PagedSDPAAttentionBackend

from tests.platforms.fake_device import fake_device_module


@pytest.fixture
def xpu():
    p = XpuPlatform()
    p.device = torch.device("cpu")
    return PlatformDriver(p)


def test_capabilities_follow_the_sdpa_backend_and_runtime(xpu):
    caps = xpu.capabilities()
    assert caps.attention == PagedSDPAAttentionBackend.features
    assert caps.page_sizes == PagedSDPAAttentionBackend.page_sizes
    assert xpu.dist_backend == "xccl" and xpu.device_type == "xpu"
    assert not caps.graph_capture  # this torch build has no XPU runtime
    names = [b.name for b in xpu.attention_backends()]
    # no Intel Triton backend here: the portable Triton backend is not offered
    assert names == ["vllm-xpu-kernels", "sdpa"]
    backend = xpu.attention_backend(spec_for(4, 2, 64, "bfloat16", 4, 256))
    assert backend.name == "sdpa"  # vllm-xpu-kernels is not installed here
    assert xpu.ops().provider == "torch-xpu"
    assert xpu.configure(PlatformConfig()).page_size == 16


@pytest.mark.parametrize("graphs", [True, False])
def test_graph_capture_follows_the_runtime_but_sdpa_is_never_captured(monkeypatch, graphs):
    module = fake_device_module("XPUGraph" if graphs else None, "torch.xpu")
    monkeypatch.setattr(XpuPlatform, "device_module", classmethod(lambda cls: module))
    xpu = PlatformDriver(XpuPlatform())
    assert xpu.capabilities().graph_capture is graphs
    assert xpu.configure(PlatformConfig()).execution == "eager"
    match = "cannot be captured" if graphs else "no graph capture"
    with pytest.raises(CapabilityError, match=match):
        PlatformDriver(XpuPlatform()).configure(PlatformConfig(execution="graphs"))


@pytest.mark.parametrize("mode,prefix,extend,window,tree", [
    (ForwardMode.DECODE, [17, 40, 3], [1, 1, 1], None, False),
    (ForwardMode.EXTEND, [0, 20], [9, 5], None, False),
    (ForwardMode.MIXED, [12, 33], [6, 1], 8, False),
    (ForwardMode.VERIFY, [21, 5], [3, 3], None, True),
])
def test_paged_sdpa_matches_reference(xpu, mode, prefix, extend, window, tree):
    backend = xpu.attention_backend(spec_for(4, 2, 64, "float32", 4, 256))
    gen = torch.Generator().manual_seed(5)
    tree_mask = None
    if tree:
        tree_mask = torch.tensor([[[1, 0, 0], [1, 1, 0], [1, 0, 1]]] * 2, dtype=torch.bool)
    sc = build(xpu, backend, gen, dtype="float32", page_size=16, num_heads=4, num_kv_heads=2,
               head_dim=64, prefix_lens=prefix, extend_lens=extend, mode=mode, scale=0.125,
               sliding_window=window, tree_mask=tree_mask)
    backend.prepare(sc.batch)
    backend.update(sc.batch)
    layer = AttentionLayer(0, 4, 2, 64, 64, 0.125, sliding_window=window)
    out = backend.forward(sc.q, sc.k, sc.v, layer, sc.cache, sc.batch)
    torch.testing.assert_close(sc.cache.k[0], sc.k_cache_expected)
    torch.testing.assert_close(out.float(), sc.expected, atol=1e-4, rtol=1e-4)
