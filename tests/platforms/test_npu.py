"""The NPU plugin on a recording fake torch_npu: every call checked against the op schemas
copied from Ascend's op-plugin, results against the torch reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from anyware.kernels import reference as ref
from anyware.plugin import (
    AttentionLayer,
    CapabilityError,
    Dispatched,
    ForwardMode,
    MoESpec,
    PlatformConfig,
)
from anyware.runtime import PlatformDriver
from anyware_conformance.paged import build, spec_for
from anyware_npu.platform import NpuPlatform

from tests.platforms.fake_device import fake_device_module
from tests.platforms.fake_torch_npu import FakeTorchNpu, load_schemas

NPU_SRC = Path(__file__).resolve().parents[2] / "platforms" / "npu"


@pytest.fixture
def npu():
    fake = FakeTorchNpu()
    p = NpuPlatform()
    p.torch_npu = lambda: fake
    p.device = torch.device("cpu")
    return PlatformDriver(p), fake


def test_every_op_the_plugin_calls_is_in_the_schema_file():
    called = set()
    for path in NPU_SRC.glob("*.py"):
        called |= set(re.findall(r"self\._npu\.(\w+)\(", path.read_text()))
    assert called, "no torch_npu call sites found"
    assert called <= set(load_schemas()), sorted(called - set(load_schemas()))


def test_capabilities_match_the_fused_attention_backend(npu):
    p, _ = npu
    caps = p.capabilities()
    backend = p.attention_backends()[0]
    assert backend.name == "npu-fused-infer-attention"
    assert caps.page_sizes[0] == 128 and caps.attention == backend.features
    assert p.dist_backend == "hccl" and p.device_type == "npu"
    assert p.configure(PlatformConfig()).page_size == 128
    with pytest.raises(CapabilityError, match="dtype"):
        p.configure(PlatformConfig(dtype=torch.float32))


@pytest.mark.parametrize("graphs", [True, False])
def test_graph_capture_follows_torch_npu_but_fused_attention_is_never_captured(monkeypatch,
                                                                               graphs):
    module = fake_device_module("NPUGraph" if graphs else None, "torch.npu")
    monkeypatch.setattr(NpuPlatform, "device_module", classmethod(lambda cls: module))
    p = PlatformDriver(NpuPlatform())
    assert p.capabilities().graph_capture is graphs
    assert p.configure(PlatformConfig()).execution == "eager"
    match = "cannot be captured" if graphs else "no graph capture"
    with pytest.raises(CapabilityError, match=match):
        PlatformDriver(NpuPlatform()).configure(PlatformConfig(execution="graphs"))


def test_without_torch_npu_no_graph_capture_is_declared(npu):
    p, _ = npu  # torch_npu is not installed here: the toolkit's import fails, nothing raises
    assert not p.capabilities().graph_capture
    assert "torch" in p.runtime_versions()


def test_ops_match_reference(npu):
    p, fake = npu
    ops = p.ops()
    dt = torch.float16
    x, r, w = torch.randn(6, 64, dtype=dt), torch.randn(6, 64, dtype=dt), torch.randn(64, dtype=dt)
    torch.testing.assert_close(ops.rms_norm(x, w, 1e-6), ref.rms_norm(x, w, 1e-6), atol=1e-2, rtol=1e-2)
    y, s = ops.fused_add_rms_norm(x, r, w, 1e-6)
    ry, rs = ref.fused_add_rms_norm(x, r, w, 1e-6)
    torch.testing.assert_close(y, ry, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(s, rs)
    g = torch.randn(6, 128, dtype=dt)
    torch.testing.assert_close(ops.silu_and_mul(g), ref.silu_and_mul(g), atol=1e-2, rtol=1e-2)
    q, k = torch.randn(6, 4, 64, dtype=dt), torch.randn(6, 2, 64, dtype=dt)
    pos = torch.tensor([0, 3, 7, 8, 20, 31])
    for rot, neox in ((64, True), (64, False), (32, True)):
        cos_sin = ref.rope_cos_sin(rot, 64, 10000.0)
        got = ops.rotary(q, k, pos, cos_sin, neox)
        want = ref.apply_rotary(q, k, pos, cos_sin, neox)
        for a, b_ in zip(got, want):
            torch.testing.assert_close(a, b_, atol=1e-2, rtol=1e-2)
    kc, vc = torch.zeros(64, 2, 64, dtype=dt), torch.zeros(64, 2, 64, dtype=dt)
    slots = torch.tensor([5, 17, 40, 63, 1, 2])
    ops.store_kv(kc, vc, k, k, slots)
    torch.testing.assert_close(kc[slots], k)
    names = {c[0] for c in fake.calls}
    assert {"npu_rms_norm", "npu_add_rms_norm", "npu_swiglu", "npu_rotary_mul",
            "_npu_reshape_and_cache"} <= names


@pytest.mark.parametrize("mode,prefix,extend", [
    (ForwardMode.DECODE, [17, 140, 3], [1, 1, 1]),
    (ForwardMode.EXTEND, [0, 130], [9, 5]),
    (ForwardMode.MIXED, [12, 33], [6, 1]),
    (ForwardMode.VERIFY, [21, 5], [3, 3]),
])
def test_fused_attention_matches_reference(npu, mode, prefix, extend):
    p, fake = npu
    backend = p.attention_backend(spec_for(4, 2, 64, "float16", 4, 512))
    gen = torch.Generator().manual_seed(3)
    sc = build(p, backend, gen, dtype="float16", page_size=128, num_heads=4, num_kv_heads=2,
               head_dim=64, prefix_lens=prefix, extend_lens=extend, mode=mode, scale=0.125)
    backend.prepare(sc.batch)
    backend.update(sc.batch)
    out = backend.forward(sc.q, sc.k, sc.v, AttentionLayer(0, 4, 2, 64, 64, 0.125), sc.cache, sc.batch)
    torch.testing.assert_close(sc.cache.k[0], sc.k_cache_expected)
    torch.testing.assert_close(out.float(), sc.expected, atol=1e-2, rtol=1e-2)
    layout = [c[1]["input_layout"] for c in fake.calls if c[0] == "npu_fused_infer_attention_score"]
    assert layout == ["BSH" if mode is ForwardMode.DECODE else "TND"]


def test_grouped_matmul_experts_match_reference(npu):
    p, fake = npu
    counts = torch.tensor([3, 0, 2, 4])
    n, h, inter = int(counts.sum()), 32, 16
    row_expert = torch.repeat_interleave(torch.arange(4), counts)
    dispatched = Dispatched(torch.randn(n, h, dtype=torch.float16), counts, torch.rand(n),
                            (None, row_expert, None, None, None))
    w13 = torch.randn(4, 2 * inter, h, dtype=torch.float16) * 0.2
    w2 = torch.randn(4, h, inter, dtype=torch.float16) * 0.2
    spec = MoESpec(4, 2, h, inter, torch.float16)
    got = p.moe_backend(spec).experts(dispatched, w13, w2)
    want = ref.ReferenceMoEBackend(p.platform, spec).experts(dispatched, w13, w2)
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
    assert [c[0] for c in fake.calls].count("npu_grouped_matmul") == 2
