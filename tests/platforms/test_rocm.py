"""The ROCm plugin: capabilities per path, and the aiter kernels it calls, run under
``TRITON_INTERPRET=1`` through the plugin's own backend and ops against the torch reference."""

from __future__ import annotations

import pytest
import torch
from anyware.kernels import reference as ref
from anyware.kernels.triton.attention_backend import TritonAttentionBackend
from anyware.plugin import CapabilityError, ForwardMode, PlatformConfig
from anyware.runtime import PlatformDriver
from anyware_conformance.paged import build, spec_for
from anyware_rocm.platform import RocmPlatform
from anyware_rocm.probe import RocmEnvironment
from anyware_torchdev import TorchGraphExecution, supports_graphs

from tests.platforms.aiter_harness import aiter_missing, aiter_on_cpu
from tests.platforms.fake_device import fake_device_module

ON_GPU = torch.cuda.is_available()


def _platform(aiter: bool) -> RocmPlatform:
    p = RocmPlatform()
    p.env = RocmEnvironment(None, None if aiter else "aiter is not installed", False, 1)
    p.device = torch.device("cpu")
    return p


def _driver(aiter: bool) -> PlatformDriver:
    return PlatformDriver(_platform(aiter))


def test_portable_path_declares_the_triton_backend():
    p = _driver(aiter=False)
    caps = p.capabilities()
    assert p.platform.path == "portable"
    assert [b.name for b in p.attention_backends()] == ["triton"]
    assert caps.page_sizes == TritonAttentionBackend.page_sizes
    assert caps.attention == TritonAttentionBackend.features
    assert set(caps.kv_cache_dtypes) == set(TritonAttentionBackend.kv_dtypes)
    assert p.dist_backend == "nccl" and p.device_type == "cuda"
    assert caps.graph_capture == supports_graphs(torch.cuda)  # False on a CPU build of torch


@pytest.fixture
def fake_hip(monkeypatch):
    """A HIP build whose ``torch.cuda`` has a graph API (HIP graphs), or none."""
    monkeypatch.setattr(torch.version, "hip", "6.4.43482", raising=False)

    def use(graphs: bool):
        module = fake_device_module("CUDAGraph" if graphs else None, "torch.cuda")
        monkeypatch.setattr(RocmPlatform, "device_module", classmethod(lambda cls: module))
        return module
    return use


def test_portable_path_captures_hip_graphs_by_default(fake_hip):
    module = fake_hip(graphs=True)
    p = _driver(aiter=False)
    assert p.capabilities().graph_capture
    config = p.configure(PlatformConfig(max_batch_size=32, extra={"rocm_graph_max_batch_size": 8,
                                                                  "rocm_graph_max_prefill_tokens": 0}))
    assert config.execution == "graphs" and config.attention_backend == "triton"
    strat = p.execution_strategy()
    assert isinstance(strat, TorchGraphExecution) and strat.module is module
    assert strat.batch_sizes == (1, 2, 4, 8) and strat.prefill_tokens == ()


def test_no_graph_api_means_no_graph_capture(fake_hip):
    fake_hip(graphs=False)
    p = _driver(aiter=False)
    assert not p.capabilities().graph_capture
    assert p.configure(PlatformConfig()).execution == "eager"
    with pytest.raises(CapabilityError, match="graphs"):
        _driver(aiter=False).configure(PlatformConfig(execution="graphs"))


def test_aiter_path_defaults_to_eager_and_refuses_to_capture_aiter(fake_hip):
    fake_hip(graphs=True)
    p = _driver(aiter=True)
    assert p.capabilities().graph_capture
    config = p.configure(PlatformConfig())
    assert (config.execution, config.attention_backend) == ("eager", "aiter")
    with pytest.raises(CapabilityError, match="--attention-backend triton"):
        _driver(aiter=True).configure(PlatformConfig(execution="graphs"))
    config = _driver(aiter=True).configure(PlatformConfig(execution="graphs",
                                                          attention_backend="triton"))
    assert (config.execution, config.attention_backend) == ("graphs", "triton")


def test_aiter_path_declares_aiter_first_and_its_limits():
    from anyware_rocm.aiter_backend import AiterAttentionBackend

    p = _driver(aiter=True)
    caps = p.capabilities()
    assert [b.name for b in p.attention_backends()] == ["aiter", "triton"]
    assert caps.page_sizes == AiterAttentionBackend.page_sizes == (16, 32, 64)
    assert caps.attention == AiterAttentionBackend.features and not caps.attention.tree_mask
    assert set(caps.kv_cache_dtypes) == {torch.bfloat16, torch.float16}
    with pytest.raises(CapabilityError, match="page size 128"):
        p.configure(PlatformConfig(page_size=128))
    assert p.configure(PlatformConfig()).page_size == 16
    ok, why = AiterAttentionBackend.is_available(_platform(aiter=False))
    assert not ok and "aiter is not installed" in why


def test_cuda_build_option_needs_the_switch_at_discovery():
    p = _driver(aiter=False)
    if torch.version.hip is None:
        with pytest.raises(CapabilityError, match="ANYWARE_ROCM_ALLOW_CUDA_BUILD=1"):
            p.configure(PlatformConfig(extra={"rocm_allow_cuda_build": "1"}))


needs_aiter = pytest.mark.skipif(ON_GPU or aiter_missing() is not None,
                                 reason=aiter_missing() or "interpreter tests run on CPU hosts")


@needs_aiter
@pytest.mark.parametrize("mode,prefix,extend", [
    (ForwardMode.DECODE, [17, 40, 3], [1, 1, 1]),
    (ForwardMode.EXTEND, [0, 20], [9, 5]),
    (ForwardMode.MIXED, [12, 33], [6, 1]),
    (ForwardMode.VERIFY, [21, 5], [3, 3]),
])
def test_aiter_backend_matches_reference(mode, prefix, extend):
    # fp16: Triton 3.9's interpreter computes aiter's bf16 decode path wrongly (|err| ~ 8e8
    # even on a contiguous cache) while fp16/fp32 match; bf16 is checked on hardware only
    from anyware_rocm.aiter_backend import AiterAttentionBackend

    with aiter_on_cpu():
        p = _platform(aiter=True)
        spec = spec_for(4, 2, 64, "float16", 4, 256)
        backend = AiterAttentionBackend(p, spec)
        gen = torch.Generator().manual_seed(7)
        sc = build(p, backend, gen, dtype="float16", page_size=16, num_heads=4, num_kv_heads=2,
                   head_dim=64, prefix_lens=prefix, extend_lens=extend, mode=mode, scale=0.125)
        from anyware.plugin import AttentionLayer

        layer = AttentionLayer(0, 4, 2, 64, 64, 0.125)
        backend.prepare(sc.batch)
        backend.update(sc.batch)
        out = backend.forward(sc.q, sc.k, sc.v, layer, sc.cache, sc.batch)
    assert backend.calls == 1
    torch.testing.assert_close(sc.cache.k[0], sc.k_cache_expected.to(sc.cache.k[0].dtype))
    torch.testing.assert_close(out.float(), sc.expected, atol=2e-2, rtol=2e-2)


@needs_aiter
def test_aiter_rmsnorm_ops_match_reference():
    from anyware_rocm.aiter_ops import AiterOps

    with aiter_on_cpu():
        ops = AiterOps()
        x = torch.randn(5, 96, dtype=torch.float16)  # fp16: see the bf16 note above
        r = torch.randn(5, 96, dtype=torch.float16)
        w = torch.randn(96, dtype=torch.float16)
        y = ops.rms_norm(x, w, 1e-6)
        y2, s = ops.fused_add_rms_norm(x, r, w, 1e-6)
    torch.testing.assert_close(y.float(), ref.rms_norm(x, w, 1e-6).float(), atol=2e-2, rtol=2e-2)
    total = (x + r)
    torch.testing.assert_close(s.float(), total.float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(y2.float(), ref.rms_norm(total, w, 1e-6).float(),
                               atol=2e-2, rtol=2e-2)
    assert ops.calls["rms_norm"] == 1 and ops.calls["fused_add_rms_norm"] == 1
