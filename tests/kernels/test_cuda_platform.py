"""The CUDA plugin's host-side behaviour: discovery, a side-effect-free probe, declared
capabilities, graph buckets. Runs anywhere (no GPU needed)."""

from __future__ import annotations

import sys

import pytest
import torch
from anyware.runtime import PlatformDriver, discover, probe
from anyware_cuda.platform import CudaPlatform
from anyware_torchdev import TorchGraphExecution, default_buckets, default_prefill_buckets


def test_registered_through_entry_point():
    infos = {i.name: i for i in discover()}
    assert "cuda" in infos and infos["cuda"].cls is CudaPlatform
    assert CudaPlatform.priority == 100 and CudaPlatform.dist_backend == "nccl"


def test_probe_has_no_side_effects():
    had_triton = "triton" in sys.modules
    had_flashinfer = "flashinfer" in sys.modules
    initialized = torch.cuda.is_initialized()  # another test in this worker may have
    result = probe(CudaPlatform)
    assert result.reason  # available or not, it says why
    assert torch.cuda.is_initialized() == initialized
    assert ("triton" in sys.modules) == had_triton
    assert ("flashinfer" in sys.modules) == had_flashinfer
    if torch.version.cuda is None:
        assert not result.available and "pip install anyware[cuda]" in result.reason


def test_capabilities_declared():
    pytest.importorskip("triton")
    caps = PlatformDriver(CudaPlatform()).capabilities()
    assert caps.attention_backend == "triton"  # derived from the default backend, not declared
    assert caps.graph_capture == (torch.version.cuda is not None)
    assert torch.bfloat16 in caps.dtypes
    assert {1, 16, 64} <= set(caps.page_sizes)
    assert caps.attention.decode and caps.attention.extend_with_prefix and caps.attention.verify
    assert caps.quantization == {"fp8"}


@pytest.mark.parametrize("cc,ok", [((8, 0), False), ((8, 6), False), ((8, 9), True),
                                   ((9, 0), True), ((10, 0), True)])
def test_fp8_needs_compute_capability_8_9(monkeypatch, cc, ok):
    """fp8 is declared without touching the device; ``_configure`` refuses it below 8.9."""
    from anyware.plugin import CapabilityError, PlatformConfig

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cc)
    plat = CudaPlatform()
    plat._configure(PlatformConfig(execution="eager"))  # no quantization: never asked
    config = PlatformConfig(execution="eager", quantization="fp8")
    if ok:  # accepted as asked (only ``triton_pdl``'s default is added)
        assert plat._configure(config).quantization == "fp8"
    else:
        with pytest.raises(CapabilityError, match=rf"8\.9\+.*this GPU is {cc[0]}\.{cc[1]}"):
            plat._configure(config)


def test_fp8_asks_every_visible_gpu(monkeypatch):
    """Checked before a rank picks its GPU: the oldest visible GPU decides, and is named."""
    from anyware.plugin import CapabilityError, PlatformConfig

    caps = {0: (9, 0), 1: (8, 0), 2: (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: caps[device])
    monkeypatch.setattr(CudaPlatform, "visible_device_count", lambda self: 3)
    with pytest.raises(CapabilityError, match=r"this GPU is 8\.0 \(device 1 of 3\)"):
        CudaPlatform()._configure(PlatformConfig(execution="eager", quantization="fp8"))
    caps[1] = (9, 0)
    config = PlatformConfig(execution="eager", quantization="fp8")
    assert CudaPlatform()._configure(config).quantization == "fp8"


def test_backend_preference_order():
    pytest.importorskip("triton")
    names = [b.name for b in PlatformDriver(CudaPlatform()).attention_backends()]
    assert names == ["triton", "flashinfer"]  # FlashInfer is opt-in until validated


def test_graph_buckets():
    assert default_buckets(32) == (1, 2, 4, 8, 16, 24, 32)
    assert default_buckets(20) == (1, 2, 4, 8, 16, 20)
    strat = TorchGraphExecution(torch.cuda, max_batch_size=64)
    assert strat.bucket_for(3) == 4 and strat.bucket_for(64) == 64
    assert strat.bucket_for(65) is None
    assert TorchGraphExecution(torch.cuda, batch_sizes=(8, 2)).batch_sizes == (2, 8)


def test_prefill_graph_buckets_and_selection():
    from anyware.plugin import ForwardBatch, ForwardMode

    assert default_prefill_buckets(512) == (16, 32, 64, 128, 256, 384, 512)
    assert default_prefill_buckets(600)[-2:] == (512, 600)
    assert default_prefill_buckets(0) == ()
    strat = TorchGraphExecution(torch.cuda, max_batch_size=8, max_prefill_tokens=256)

    def batch(prefix, ext, mode=ForwardMode.EXTEND, logits=None):
        return ForwardBatch.build(
            mode=mode, input_ids=[1] * sum(ext), prefix_lens=prefix, extend_lens=ext,
            page_table=torch.zeros((len(ext), 8), dtype=torch.int32),
            out_slots=list(range(sum(ext))), page_size=16, device="cpu",
            logit_requests=logits)

    assert strat.prefill_bucket_for(batch([0], [100])) == 128
    assert strat.prefill_bucket_for(batch([0], [16])) == 16
    assert strat.prefill_bucket_for(batch([0], [100], logits=[False])) == 128  # inner chunk
    assert strat.prefill_bucket_for(batch([0], [257])) is None  # above the largest bucket
    assert strat.prefill_bucket_for(batch([3], [10])) is None  # a cached prefix
    assert strat.prefill_bucket_for(batch([0, 0], [10, 5])) is None  # several requests
    assert strat.prefill_bucket_for(batch([0], [5], ForwardMode.MIXED)) is None
    assert TorchGraphExecution(torch.cuda, max_prefill_tokens=0).prefill_tokens == ()


def test_graph_options_reach_the_strategy():
    """``--platform-opt cuda_graph_*`` keys configure the toolkit's graph strategy."""
    from anyware.plugin import PlatformConfig

    plat = CudaPlatform()
    plat.config = PlatformConfig(max_batch_size=48, max_prefill_tokens=1024, execution="graphs",
                                 extra={"cuda_graph_max_prefill_tokens": 512})
    strat = plat._execution_strategy("graphs")
    assert isinstance(strat, TorchGraphExecution) and strat.module is torch.cuda
    assert strat.max_batch_size == 48 and strat.prefill_tokens[-1] == 512
    plat.config = PlatformConfig(extra={"cuda_graph_batch_sizes": [4, 1]})
    assert plat._execution_strategy("graphs").batch_sizes == (1, 4)


@pytest.mark.parametrize("extra,fused,gemv", [
    ({}, True, 0),
    ({"cuda_fp8_fused_activations": False}, False, 0),
    ({"cuda_fp8_fused_activations": "off"}, False, 0),
    ({"cuda_fp8_gemv_max_rows": 4}, False, 4),  # the few-rows kernel quantises its own input
])
def test_fp8_ops_options(extra, fused, gemv):
    """``cuda_fp8_fused_activations`` (default on) and ``cuda_fp8_gemv_max_rows`` reach the
    Triton ops; a value that is not a boolean is refused by name."""
    pytest.importorskip("triton")
    from anyware.plugin import PlatformConfig

    plat = CudaPlatform()
    plat.config = PlatformConfig(extra=extra)
    ops = plat._create_ops()
    assert ops.fp8_activations is fused and ops.fp8_gemv_max_rows == gemv
    plat.config = PlatformConfig(extra={"cuda_fp8_fused_activations": "maybe"})
    with pytest.raises(ValueError, match="true or false"):
        plat._create_ops()


@pytest.mark.parametrize("caps,interpreted,on", [
    ([(9, 0)], False, True), ([(10, 0), (9, 0)], False, True),
    ([(9, 0), (8, 9)], False, False),  # the oldest visible GPU decides
    ([(8, 0)], False, False), ([], False, False), ([(9, 0)], True, False),
])
def test_pdl_default_from_the_devices(monkeypatch, caps, interpreted, on):
    """``triton_pdl`` defaults on where every visible GPU is 9.0+ (and Triton compiles, not
    interprets); it then reaches the ops and the MoE backend (the attention backend's reading
    of it: ``test_decode_tuning_from_platform_options``). An explicit false stays."""
    pytest.importorskip("triton")
    from anyware.kernels.triton.moe_backend import TritonMoEBackend
    from anyware.plugin import MoESpec, PlatformConfig

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: caps[device])
    monkeypatch.setattr(CudaPlatform, "visible_device_count", lambda self: len(caps))
    monkeypatch.setenv("TRITON_INTERPRET", "1" if interpreted else "0")
    plat = CudaPlatform()
    plat.config = plat._configure(PlatformConfig(execution="eager"))
    assert plat.config.extra["triton_pdl"] is on
    assert plat._create_ops().pdl is on
    assert TritonMoEBackend(plat, MoESpec(8, 2, 32, 16, torch.float32)).pdl is on
    off = plat._configure(PlatformConfig(execution="eager", extra={"triton_pdl": "false"}))
    plat.config = off
    assert off.extra["triton_pdl"] == "false" and plat._create_ops().pdl is False


def test_pdl_true_where_it_cannot_work_is_refused(monkeypatch):
    from anyware.plugin import CapabilityError, PlatformConfig

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(CudaPlatform, "visible_device_count", lambda self: 1)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    config = PlatformConfig(execution="eager", extra={"triton_pdl": True})
    with pytest.raises(CapabilityError, match=r"triton_pdl=true.*9\.0\+.*this GPU is 8\.0"):
        CudaPlatform()._configure(config)
