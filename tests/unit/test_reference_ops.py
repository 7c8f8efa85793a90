"""The CPU platform's ops against values computed by hand, plus the checks of the contract that
guard them: Capabilities validation, the effective capabilities derived from the attention
backend, configure errors and the plugin-API version check.

Inputs are tiny and chosen so that every expected value can be written down (or derived with
scalar ``math``) in the test itself; they do not depend on the reference implementation.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from anyware.kernels.reference import ReferenceAttentionBackend, rope_cos_sin
from anyware.plugin import (
    PLUGIN_API_VERSION,
    AttentionFeatures,
    AttentionLayer,
    AttentionSpec,
    Capabilities,
    CapabilityError,
    ForwardBatch,
    ForwardMode,
    KVCache,
    PlatformConfig,
    PluginError,
    PluginVersionError,
    SamplingTensors,
)
from anyware.runtime import EffectiveCapabilities, PlatformDriver, check_api_version

EXACT = {"atol": 1e-6, "rtol": 1e-6}  # fp32 with inputs chosen to be exactly representable


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


@pytest.fixture
def ops(cpu_platform):
    return cpu_platform.ops()


# ---------------------------------------------------------------- norms
def test_rms_norm(ops):
    # mean(x^2) = 4, rsqrt = 1/2
    out = ops.rms_norm(t([[2.0, -2.0, 2.0, -2.0]]), t([1.0, 2.0, 3.0, 4.0]), eps=0.0)
    torch.testing.assert_close(out, t([[1.0, -2.0, 3.0, -4.0]]), **EXACT)
    # eps counts: mean(x^2) = 1, + eps 3 -> rsqrt(4) = 1/2
    out = ops.rms_norm(t([[1.0, -1.0, 1.0, -1.0]]), t([2.0, 2.0, 2.0, 2.0]), eps=3.0)
    torch.testing.assert_close(out, t([[1.0, -1.0, 1.0, -1.0]]), **EXACT)
    assert ops.calls["rms_norm"] == 2


def test_rms_norm_keeps_dtype(ops):
    out = ops.rms_norm(t([[2.0, -2.0]], torch.bfloat16), t([1.0, 0.5], torch.bfloat16), 0.0)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, t([[1.0, -0.5]], torch.bfloat16), atol=0, rtol=0)


def test_fused_add_rms_norm(ops):
    x = t([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 3.0, 0.0]])
    residual = t([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 1.0, 0.0]])
    weight = t([1.0, 1.0, 1.0, 1.0])
    normed, summed = ops.fused_add_rms_norm(x, residual, weight, eps=0.0)
    # row 0: r = [2,-2,2,-2], rms 2; row 1: r = [0,0,4,0], mean(x^2) = 4, rms 2
    torch.testing.assert_close(summed, t([[2.0, -2.0, 2.0, -2.0], [0.0, 0.0, 4.0, 0.0]]), **EXACT)
    torch.testing.assert_close(normed, t([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 2.0, 0.0]]), **EXACT)


# ---------------------------------------------------------------- rotary
# Hand-made table, rot_dim 4: row = [cos f0, cos f1, sin f0, sin f1]. Position 0 is the
# identity; at position 1 frequency 0 has turned by pi/2 (cos 0, sin 1) and frequency 1 not.
COS_SIN = t([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
Q = t([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]])  # [T=2, H=1, D=4]
K = t([[[5.0, 6.0, 7.0, 8.0]], [[5.0, 6.0, 7.0, 8.0]]])
POS = torch.tensor([0, 1])


def test_rotary_neox(ops):
    # neox pairs (0, 2) and (1, 3); (a, b, c, d) at pi/2 on pair (0, 2) -> (-c, b, a, d)
    q, k = ops.rotary(Q, K, POS, COS_SIN, is_neox=True)
    torch.testing.assert_close(q, t([[[1.0, 2.0, 3.0, 4.0]], [[-3.0, 2.0, 1.0, 4.0]]]), **EXACT)
    torch.testing.assert_close(k, t([[[5.0, 6.0, 7.0, 8.0]], [[-7.0, 6.0, 5.0, 8.0]]]), **EXACT)


def test_rotary_gptj(ops):
    # GPT-J pairs (0, 1) and (2, 3); (a, b, c, d) at pi/2 on pair (0, 1) -> (-b, a, c, d)
    q, k = ops.rotary(Q, K, POS, COS_SIN, is_neox=False)
    torch.testing.assert_close(q, t([[[1.0, 2.0, 3.0, 4.0]], [[-2.0, 1.0, 3.0, 4.0]]]), **EXACT)
    torch.testing.assert_close(k, t([[[5.0, 6.0, 7.0, 8.0]], [[-6.0, 5.0, 7.0, 8.0]]]), **EXACT)


def test_rotary_partial_leaves_tail_untouched(ops):
    # rot_dim 2 of head_dim 4: only dims 0, 1 rotate (by pi/2 at position 1)
    cos_sin = t([[1.0, 0.0], [0.0, 1.0]])
    q, _ = ops.rotary(Q, K, POS, cos_sin, is_neox=True)
    torch.testing.assert_close(q[1], t([[-2.0, 1.0, 3.0, 4.0]]), **EXACT)


def test_rope_table_default():
    # rot_dim 4, base 100: inverse frequencies 1 and 1/10
    table = rope_cos_sin(4, 3, 100.0)
    expected = [[math.cos(p * f) for f in (1.0, 0.1)] + [math.sin(p * f) for f in (1.0, 0.1)]
                for p in range(3)]
    torch.testing.assert_close(table, t(expected), atol=1e-6, rtol=1e-6)


def _inv_freq_from_table(table: torch.Tensor) -> torch.Tensor:
    """Recover each frequency from the position-1 row (angle = frequency for angles < pi)."""
    half = table.shape[1] // 2
    return torch.atan2(table[1, half:].double(), table[1, :half].double())


def test_llama3_rope_scaling_bands():
    # rot_dim 8, base 10^4: inverse frequencies 1, 1e-1, 1e-2, 1e-3, i.e. wavelengths 2*pi*10^i.
    # original 1024 positions, low/high factors 1/4: wavelengths < 256 keep their frequency,
    # > 1024 are divided by the factor 8, in between blend smoothly.
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}
    got = _inv_freq_from_table(rope_cos_sin(8, 2, 10000.0, scaling))
    smooth = (1024 / (2 * math.pi / 1e-2) - 1.0) / (4.0 - 1.0)
    mid = (1 - smooth) * 1e-2 / 8.0 + smooth * 1e-2
    expected = torch.tensor([1.0, 1e-1, mid, 1e-3 / 8.0], dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=0, rtol=1e-5)
    assert 1e-2 / 8.0 < mid < 1e-2


def test_linear_rope_scaling():
    got = _inv_freq_from_table(rope_cos_sin(4, 2, 100.0, {"rope_type": "linear", "factor": 2.0}))
    torch.testing.assert_close(got, torch.tensor([0.5, 0.05], dtype=torch.float64), atol=0, rtol=1e-5)


# ---------------------------------------------------------------- activation, KV store, MoE
def test_silu_and_mul(ops):
    def silu(v: float) -> float:
        return v / (1.0 + math.exp(-v))

    out = ops.silu_and_mul(t([[0.0, 1.0, 5.0, 7.0], [-1.0, 2.0, 3.0, -4.0]]))
    expected = t([[0.0, silu(1.0) * 7.0], [silu(-1.0) * 3.0, silu(2.0) * -4.0]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_store_kv(ops):
    k_cache = torch.zeros(6, 1, 2, dtype=torch.bfloat16)
    v_cache = torch.zeros(6, 1, 2, dtype=torch.bfloat16)
    k = t([[[1.0, 2.0]], [[3.0, 4.0]]])
    v = t([[[5.0, 6.0]], [[7.0, 8.0]]])
    ops.store_kv(k_cache, v_cache, k, v, torch.tensor([4, 1]))
    expected_k = torch.zeros(6, 1, 2)
    expected_k[4], expected_k[1] = t([[1.0, 2.0]]), t([[3.0, 4.0]])
    expected_v = torch.zeros(6, 1, 2)
    expected_v[4], expected_v[1] = t([[5.0, 6.0]]), t([[7.0, 8.0]])
    assert k_cache.dtype == torch.bfloat16
    torch.testing.assert_close(k_cache.float(), expected_k, atol=0, rtol=0)
    torch.testing.assert_close(v_cache.float(), expected_v, atol=0, rtol=0)


def test_moe_route():
    from anyware.kernels.reference import moe_route

    # softmax(log p) = p
    logits = torch.log(t([[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.3, 0.1]]))
    weights, ids = moe_route(logits, top_k=2, renormalize=False)
    assert weights.dtype == torch.float32 and ids.dtype == torch.int32
    assert ids.tolist() == [[3, 2], [0, 2]]
    torch.testing.assert_close(weights, t([[0.4, 0.3], [0.5, 0.3]]), atol=1e-6, rtol=1e-6)
    weights, ids = moe_route(logits, top_k=2, renormalize=True)
    assert ids.tolist() == [[3, 2], [0, 2]]
    torch.testing.assert_close(weights, t([[4 / 7, 3 / 7], [0.625, 0.375]]), atol=1e-6, rtol=1e-6)


def test_greedy_sampling_takes_lowest_index_on_ties(ops):
    logits = t([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 5.0, 5.0]])
    params = SamplingTensors(
        temperatures=t([1.0, 1.0]), top_ks=torch.tensor([4, 4], dtype=torch.int32),
        top_ps=t([1.0, 1.0]), min_ps=t([0.0, 0.0]), seeds=torch.tensor([0, 1]),
        steps=torch.tensor([0, 0]), greedy=torch.tensor([True, True]),
    )
    assert ops.sample(logits, params).tolist() == [1, 0]


# ---------------------------------------------------------------- paged attention
def test_paged_attention_two_requests_page_size_2(cpu_platform):
    """Two requests, page size 2, 5 pages (slots 0-9), 2 query heads sharing 1 KV head, dim 1.

    Request 0: 3 tokens cached at positions 0-2, 1 new token (position 3); pages [3, 1], so
    positions 0, 1 -> slots 6, 7 and positions 2, 3 -> slots 2, 3.
    Request 1: no prefix, 2 new tokens at positions 0, 1; pages [2, (4: unused entry)] ->
    slots 4, 5. Every other slot holds a poison value that must never be read.

    Scores are q * k (scale 1). Head 0 has q = 0: uniform weights, the output is the mean of
    the visible v. Head 1 has q = ln 2: a key with k = 1 weighs twice a key with k = 0.
    """
    spec = AttentionSpec(1, 2, 1, 1, 1, torch.float32, max_batch_size=2, max_context_len=8)
    backend = cpu_platform.attention_backend(spec)
    layout = backend.kv_layout(2, torch.float32)
    k_cache = torch.full(layout.k_shape(5), 1.0)
    v_cache = torch.full(layout.v_shape(5), 1000.0)  # poison
    # request 0's cached prefix: (k, v) = (1, 10), (0, 20), (1, 30) at positions 0, 1, 2
    for slot, kk, vv in [(6, 1.0, 10.0), (7, 0.0, 20.0), (2, 1.0, 30.0)]:
        k_cache[slot], v_cache[slot] = kk, vv
    cache = KVCache(layout, [k_cache], [v_cache], num_pages=5)
    batch = ForwardBatch.build(
        mode=ForwardMode.EXTEND,
        input_ids=[11, 12, 13],
        prefix_lens=[3, 0],
        extend_lens=[1, 2],
        page_table=torch.tensor([[3, 1], [2, 4]]),
        out_slots=[3, 4, 5],
        page_size=2,
        device="cpu",
    )
    ln2 = math.log(2.0)
    q = t([[[0.0], [ln2]]] * 3)  # [T=3, Hq=2, D=1]
    new_k = t([[[0.0]], [[0.0]], [[1.0]]])  # r0 pos 3: k 0; r1 pos 0: k 0, pos 1: k 1
    new_v = t([[[40.0]], [[100.0]], [[200.0]]])

    def run(sliding_window=None):
        layer = AttentionLayer(0, 2, 1, 1, 1, scale=1.0, sliding_window=sliding_window)
        backend.prepare(batch)
        backend.update(batch)
        return backend.forward(q, new_k, new_v, layer, cache, batch)

    out = run()
    assert out.shape == (3, 2, 1)
    # the new KV went to its slots
    assert k_cache[[3, 4, 5], 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert v_cache[[3, 4, 5], 0, 0].tolist() == [40.0, 100.0, 200.0]
    expected = t([
        # r0 pos 3 sees k [1,0,1,0], v [10,20,30,40]: mean 25; weights 2:1:2:1 -> 140/6
        [[25.0], [140.0 / 6.0]],
        # r1 pos 0 sees only itself
        [[100.0], [100.0]],
        # r1 pos 1 sees k [0,1], v [100,200]: mean 150; weights 1:2 -> 500/3
        [[150.0], [500.0 / 3.0]],
    ])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-5)

    # sliding window 2: r0 pos 3 sees positions 2, 3 only: mean(30, 40); weights 2:1 -> 100/3
    out = run(sliding_window=2)
    expected[0] = t([[35.0], [100.0 / 3.0]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-5)
    assert backend.calls == 2


# ---------------------------------------------------------------- capabilities
def caps(**kw) -> Capabilities:
    return Capabilities(**({"dtypes": frozenset({torch.float32})} | kw))


def backend_class(**attrs) -> type:
    """A reference-backend subclass with other declared class attributes."""
    return type("Declared", (ReferenceAttentionBackend,), {"name": "declared", **attrs})


@pytest.mark.parametrize(
    "bad",
    [{"dtypes": frozenset()}, {"max_world_size": 0},
     {"collectives": frozenset({"all_reduce", "teleport"})}],
    ids=["no-dtype", "world-0", "unknown-collective"],
)
def test_capabilities_reject_invalid(bad):
    with pytest.raises(ValueError):
        caps(**bad)


@pytest.mark.parametrize("removed", ["page_sizes", "kv_cache_dtypes", "attention"])
def test_platform_cannot_declare_what_the_backend_declares(removed):
    with pytest.raises(TypeError, match=removed):
        caps(**{removed: None})


@pytest.mark.parametrize(
    "attrs",
    [{"page_sizes": ()}, {"page_sizes": (16, 0)}, {"kv_dtypes": ()}, {"features": "all"}],
    ids=["no-page-size", "page-size-0", "no-kv-dtype", "features-not-data"],
)
def test_effective_capabilities_reject_invalid_backend(attrs):
    with pytest.raises(PluginError, match="declared"):
        EffectiveCapabilities.derive(caps(), backend_class(**attrs))


def test_effective_capabilities_come_from_the_backend():
    features = AttentionFeatures(verify=False, sliding_window=True)
    backend = backend_class(page_sizes=(32, 8), kv_dtypes=(torch.bfloat16,), features=features)
    c = EffectiveCapabilities.derive(caps(max_world_size=8, graph_capture=True), backend)
    assert c.page_sizes == (32, 8) and c.kv_cache_dtypes == frozenset({torch.bfloat16})
    assert c.attention is features and c.attention_backend == "declared"
    assert c.dtypes == frozenset({torch.float32}) and c.max_world_size == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.max_world_size = 9  # type: ignore[misc]
    summary = c.summary()
    assert "dtypes=float32" in summary and "pages=32,8" in summary
    assert "world<=8" in summary and "graph_capture" in summary
    assert "attn=declared:extend_with_prefix+decode+sliding_window" in summary
    assert c.to_dict()["kv_cache_dtypes"] == ["bfloat16"]


def test_cpu_capabilities_are_its_default_backends(cpu_platform):
    c = cpu_platform.capabilities()
    assert c.attention_backend == ReferenceAttentionBackend.name
    assert c.page_sizes == ReferenceAttentionBackend.page_sizes
    assert c.attention == ReferenceAttentionBackend.features
    assert c.kv_cache_dtypes == frozenset(ReferenceAttentionBackend.kv_dtypes)


def test_attention_features_missing():
    have = AttentionFeatures(sliding_window=False, logit_softcap=True)
    want = AttentionFeatures(verify=False, sliding_window=True, logit_softcap=True)
    assert have.missing(want) == ("sliding_window",)
    assert have.missing(AttentionFeatures(verify=False)) == ()


# ---------------------------------------------------------------- configure
def test_configure_fills_defaults(cpu_platform):
    config = cpu_platform.configure(PlatformConfig())
    assert config.dtype == torch.float32 and config.kv_cache_dtype == torch.float32
    assert config.page_size == cpu_platform.capabilities().page_sizes[0]
    assert config.execution == "eager"
    assert cpu_platform.config is config


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (PlatformConfig(dtype=torch.float64), "torch.float64"),
        (PlatformConfig(kv_cache_dtype=torch.int8), "torch.int8"),
        (PlatformConfig(page_size=3), "page size 3"),
        (PlatformConfig(execution="graphs"), "graphs"),
        (PlatformConfig(execution="compiled"), "compiled"),
        (PlatformConfig(execution="warp-drive"), "warp-drive"),
        (PlatformConfig(world_size=10_000), "world size 10000"),
    ],
    ids=["dtype", "kv-dtype", "page-size", "graphs", "compiled", "unknown-execution", "world"],
)
def test_configure_rejects_unsupported(cpu_platform, config, named):
    with pytest.raises(CapabilityError, match="cpu") as err:
        cpu_platform.configure(config)
    assert named in str(err.value)
    assert cpu_platform.config is None  # nothing half-applied


def test_configure_rejects_missing_attention_feature(cpu_platform):
    limited = backend_class(features=AttentionFeatures(sliding_window=False))

    class Limited(type(cpu_platform.platform)):  # its only backend has no sliding window
        def _attention_backends(self):
            return [limited]

    driver = PlatformDriver(Limited())
    assert not driver.capabilities().attention.sliding_window  # derived, never declared
    with pytest.raises(CapabilityError, match="sliding_window"):
        driver.configure(
            PlatformConfig(attention_features=AttentionFeatures(verify=False, sliding_window=True))
        )


def test_configure_checks_the_named_backend(cpu_platform):
    small = backend_class(name="small", priority=-1, page_sizes=(8,))

    class Two(type(cpu_platform.platform)):
        def _attention_backends(self):
            return [ReferenceAttentionBackend, small]

    driver = PlatformDriver(Two())
    assert driver.configure(PlatformConfig(page_size=16)).attention_backend == "torch-reference"
    with pytest.raises(CapabilityError, match=r"page size 16.*'small'"):
        driver.configure(PlatformConfig(page_size=16, attention_backend="small"))
    config = driver.configure(PlatformConfig(attention_backend="small"))
    assert config.page_size == 8  # the named backend's first size
    assert driver.capabilities().attention_backend == "small"  # follows the configuration
    assert driver.capabilities().page_sizes == (8,)
    with pytest.raises(CapabilityError, match="'nope'"):
        driver.configure(PlatformConfig(attention_backend="nope"))


def test_compiled_execution_needs_a_declared_and_implemented_strategy(cpu_platform):
    """No platform implements "compiled" today: it is a CapabilityError at configure time
    unless the platform declares compiled_execution and returns a strategy of that kind."""
    import dataclasses

    from anyware.plugin import ExecutionStrategy, PluginError

    class Compiled(ExecutionStrategy):
        kind = "compiled"

        def run(self, batch):
            return self.program.forward(batch)

    class Declares(type(cpu_platform.platform)):  # declares compiled execution, implements none
        def _capabilities(self):
            return dataclasses.replace(super()._capabilities(), compiled_execution=True)

    plat = PlatformDriver(Declares())
    with pytest.raises(CapabilityError, match="no 'compiled' execution strategy") as err:
        plat.configure(PlatformConfig(execution="compiled"))
    assert "--execution eager" in str(err.value) and plat.config is None

    class Implements(Declares):
        def _execution_strategy(self, kind):
            return Compiled() if kind == "compiled" else super()._execution_strategy(kind)

    plat = PlatformDriver(Implements())
    assert plat.configure(PlatformConfig(execution="compiled")).execution == "compiled"
    assert plat.execution_strategy().kind == "compiled"

    class WrongKind(Declares):
        def _execution_strategy(self, kind):
            from anyware.plugin import EagerExecution

            return EagerExecution()

    with pytest.raises(PluginError, match="'eager' strategy for execution 'compiled'"):
        PlatformDriver(WrongKind()).configure(PlatformConfig(execution="compiled"))


# ---------------------------------------------------------------- plugin-API version
def _ours() -> tuple[int, int]:
    major, minor = PLUGIN_API_VERSION.split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("kind", ["exact", "major.minor", "major", "newer-patch"])
def test_check_api_version_accepts_compatible(kind):
    major, minor = _ours()
    targeted = {"exact": PLUGIN_API_VERSION, "major.minor": f"{major}.{minor}",
                "major": f"{major}", "newer-patch": f"{major}.{minor}.999"}[kind]
    check_api_version("demo", targeted)


def test_check_api_version_accepts_older_minor():
    major, minor = _ours()
    if minor == 0:
        pytest.skip("no older minor version of the current major")
    check_api_version("demo", f"{major}.{minor - 1}")


@pytest.mark.parametrize("kind", ["newer-minor", "newer-major", "older-major"])
def test_check_api_version_rejects_incompatible(kind):
    major, minor = _ours()
    targeted = {"newer-minor": f"{major}.{minor + 1}", "newer-major": f"{major + 1}.0",
                "older-major": f"{major - 1}.9"}[kind]
    with pytest.raises(PluginVersionError) as err:
        check_api_version("demo", targeted)
    message = str(err.value)
    assert "demo" in message and targeted in message and PLUGIN_API_VERSION in message


@pytest.mark.parametrize("bad", ["", "one", "1.x", "1.2.3.4", "-1.0"])
def test_check_api_version_rejects_malformed(bad):
    with pytest.raises(PluginVersionError, match=r"MAJOR\.MINOR"):
        check_api_version("demo", bad)


def test_moe_backends_declare_expert_parallelism():
    """``MoEBackend.expert_parallel`` (API 2.3) decides whether the default ``unsupported``
    accepts ``ep_size > 1``: the reference backend (and what derives from it) declares it and
    keeps every other check; the Triton backend does not."""
    pytest.importorskip("triton")
    from anyware.kernels.reference import ReferenceMoEBackend
    from anyware.kernels.triton.moe_backend import TritonMoEBackend
    from anyware.plugin import MoEBackend, MoESpec

    ep = MoESpec(8, 2, 32, 64, torch.float32, ep_rank=1, ep_size=2)
    assert MoEBackend.expert_parallel is False
    assert ReferenceMoEBackend.unsupported(ep) is None
    assert TritonMoEBackend.unsupported(ep) == "no expert parallelism (ep_size > 1)"
    assert "float64" in ReferenceMoEBackend.unsupported(dataclasses.replace(ep, dtype=torch.float64))

    class NoFp8(ReferenceMoEBackend):
        quantizations = frozenset()

    assert NoFp8.unsupported(dataclasses.replace(ep, quantization="fp8")) == "no fp8 experts"
