"""`TritonAttentionBackend` through the contract: prepare / update / forward vs the reference
backend, in every mode, including the graph-buffer path (prepare on a dummy decode batch, then
update with the real one, as a graph replay does)."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from _helpers import TOL, new_token_slots, random_paged_kv, rel_err
from anyware.kernels.reference import ReferenceAttentionBackend
from anyware.kernels.triton.attention_backend import TritonAttentionBackend
from anyware.kernels.triton.decode_attention import decode_attention
from anyware.plugin import (
    AttentionLayer,
    AttentionSpec,
    Bucket,
    ForwardBatch,
    ForwardMode,
    KVCache,
    SpecInfo,
    dummy_batch,
    pad_batch,
)

HQ, HKV, D, PAGE = 4, 2, 32, 16


def _setup(device, prefix, ext, mode, page_size=PAGE, dtype=torch.float32, spec_info=None):
    seq = [p + e for p, e in zip(prefix, ext)]
    k_cache, v_cache, pt = random_paged_kv(seq, page_size, HKV, D, dtype, device)
    slots = new_token_slots(pt, prefix, ext, page_size)
    batch = ForwardBatch.build(
        mode=mode, input_ids=[0] * sum(ext), prefix_lens=prefix, extend_lens=ext,
        page_table=pt, out_slots=slots.tolist(), page_size=page_size, device=device,
        logits_all=mode is ForwardMode.VERIFY, spec=spec_info,
    )
    t = sum(ext)
    q = torch.randn(t, HQ, D, dtype=dtype, device=device)
    k = torch.randn(t, HKV, D, dtype=dtype, device=device)
    v = torch.randn(t, HKV, D, dtype=dtype, device=device)
    return batch, (k_cache, v_cache), (q, k, v)


def _backend(cls, device, max_ctx=256):
    spec = AttentionSpec(num_layers=1, num_heads=HQ, num_kv_heads=HKV, head_dim=D,
                         v_head_dim=D, dtype=torch.float32, max_batch_size=8,
                         max_context_len=max_ctx)
    return cls(types.SimpleNamespace(device=torch.device(device)), spec)


def _run(backend, batch, caches, qkv, prepare_batch=None):
    k_cache, v_cache = (c.clone() for c in caches)
    layout = backend.kv_layout(batch.page_size, k_cache.dtype)
    cache = KVCache(layout, [k_cache], [v_cache], k_cache.shape[0] // batch.page_size)
    layer = AttentionLayer(0, HQ, HKV, D, D, scale=D**-0.5)
    backend.prepare(prepare_batch or batch)
    backend.update(batch)
    out = backend.forward(*qkv, layer, cache, batch)
    return out, k_cache, v_cache


def _compare(device, batch, caches, qkv, triton_backend=None, prepare_batch=None):
    tri = triton_backend or _backend(TritonAttentionBackend, device)
    out, kc, vc = _run(tri, batch, caches, qkv, prepare_batch)
    want, kc_ref, vc_ref = _run(_backend(ReferenceAttentionBackend, device), batch, caches, qkv)
    assert torch.equal(kc, kc_ref) and torch.equal(vc, vc_ref)
    assert rel_err(out, want) < TOL[out.dtype]
    assert tri.calls == 1


@pytest.mark.parametrize("page_size", [1, 16])
def test_extend_mode(device, page_size):
    batch, caches, qkv = _setup(device, [0, 19, 3], [11, 6, 1], ForwardMode.EXTEND, page_size)
    _compare(device, batch, caches, qkv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_prefill_matches_reference(device, dtype):
    """Fresh prompts (no prefix) through torch SDPA; a prefix or MIXED batch keeps Triton."""
    batch, caches, qkv = _setup(device, [0, 0, 0], [11, 1, 30], ForwardMode.EXTEND, dtype=dtype)
    tri = _backend(TritonAttentionBackend, device)
    tri.dense_prefill, tri.dense_prefill_half_only, tri.dense_min_tokens = True, False, 42
    _compare(device, batch, caches, qkv, triton_backend=tri)
    assert tri._plan.dense
    tri.dense_min_tokens = 43  # fewer new tokens than the threshold: Triton
    tri.prepare(batch)
    assert not tri._plan.dense
    batch, caches, qkv = _setup(device, [0, 5], [11, 3], ForwardMode.EXTEND, dtype=dtype)
    tri.prepare(batch)
    assert not tri._plan.dense


def test_decode_mode_eager(device):
    batch, caches, qkv = _setup(device, [0, 40, 7, 90], [1, 1, 1, 1], ForwardMode.DECODE)
    _compare(device, batch, caches, qkv)


@pytest.mark.parametrize("split", [True, False])
def test_mixed_and_verify_modes(device, split):
    tri = _backend(TritonAttentionBackend, device)
    tri.split_mixed_min_kv_bytes = 0 if split else 1 << 40
    batch, caches, qkv = _setup(device, [30, 0], [1, 12], ForwardMode.MIXED)
    _compare(device, batch, caches, qkv, triton_backend=tri)
    # the engine's order: prefill chunks, then decodes (split between the two kernels)
    for prefix, ext in (([0, 17, 40, 5, 90], [9, 4, 1, 1, 1]), ([3, 64], [1, 1])):
        batch, caches, qkv = _setup(device, prefix, ext, ForwardMode.MIXED)
        tri = _backend(TritonAttentionBackend, device)
        tri.split_mixed_min_kv_bytes = 0 if split else 1 << 40
        _compare(device, batch, caches, qkv, triton_backend=tri)
        assert (type(tri._plan).__name__ == "_MixedPlan") == split
    batch, caches, qkv = _setup(device, [21, 50], [3, 3], ForwardMode.VERIFY,
                                spec_info=SpecInfo(num_draft_tokens=2))
    _compare(device, batch, caches, qkv)


def _random_tree(gen, bsz: int, n: int) -> torch.Tensor:
    """Random draft trees: token a sees token b iff b is a or an ancestor of a."""
    mask = torch.zeros((bsz, n, n), dtype=torch.bool)
    for i in range(bsz):
        parent = [-1] + [int(torch.randint(0, a, (1,), generator=gen)) for a in range(1, n)]
        for a in range(n):
            b = a
            while b >= 0:
                mask[i, a, b] = True
                b = parent[b]
    return mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_verify_tree_mask(device, dtype):
    """A tree verify (each draft sees its ancestors only) equals the reference backend."""
    tree = _random_tree(torch.Generator().manual_seed(3), 2, 5).to(device)
    batch, caches, qkv = _setup(device, [11, 40], [5, 5], ForwardMode.VERIFY, dtype=dtype,
                                spec_info=SpecInfo(num_draft_tokens=4, tree_mask=tree))
    tri = _backend(TritonAttentionBackend, device)
    _compare(device, batch, caches, qkv, triton_backend=tri)
    assert tri._plan.tree
    # the mask matters: the same batch as a chain gives other rows
    chain = dataclasses.replace(batch, spec=SpecInfo(num_draft_tokens=4))
    out_chain, _, _ = _run(_backend(TritonAttentionBackend, device), chain, caches, qkv)
    out_tree, _, _ = _run(_backend(TritonAttentionBackend, device), batch, caches, qkv)
    assert not torch.allclose(out_chain, out_tree)


def test_kv_layout_rejects_unsupported(device):
    tri = _backend(TritonAttentionBackend, device)
    with pytest.raises(ValueError):
        tri.kv_layout(3, torch.float32)
    assert tri.kv_layout(16, torch.bfloat16).k_shape(4) == (64, HKV, D)


@pytest.mark.parametrize("dense", [False, True])
def test_padded_prefill_replay_semantics(device, dense):
    """A prefill graph: prepare on a dummy prompt of the bucket's length (as at capture), then
    run the real prompt padded to that bucket. Real rows equal the reference, padded rows
    write only the scratch slot 0, and the plan depends on the padded count alone."""
    dtype = torch.bfloat16 if dense else torch.float32
    batch, caches, qkv = _setup(device, [0], [21], ForwardMode.EXTEND, dtype=dtype)
    n = 32
    width = batch.page_table.shape[1] + 2
    padded = pad_batch(batch, Bucket(tokens=n, pages=width))
    assert padded.num_tokens == n and padded.extend_lens_cpu == [21]
    assert padded.out_slots[21:].eq(0).all() and padded.page_table.shape == (1, width)
    dummy = dummy_batch(ForwardMode.EXTEND, Bucket(tokens=n), page_size=PAGE, full_width=width,
                        device=device)
    tri = _backend(TritonAttentionBackend, device)
    tri.dense_prefill, tri.dense_prefill_half_only = dense, not dense
    pad_qkv = tuple(torch.cat([x, torch.randn((n - 21, *x.shape[1:]), dtype=dtype,
                                              device=device)]) for x in qkv)
    out, kc, vc = _run(tri, padded, caches, pad_qkv, prepare_batch=dummy)
    assert tri._plan.max_extend_len == n and tri._plan.dense == dense
    want, kc_ref, vc_ref = _run(_backend(ReferenceAttentionBackend, device), batch, caches, qkv)
    assert out.shape[0] == n
    assert rel_err(out[:21], want) < TOL[out.dtype]
    # the real tokens' K/V landed; padding touched only slot 0 (the scratch page)
    assert torch.equal(kc[1:], kc_ref[1:]) and torch.equal(vc[1:], vc_ref[1:])


def test_pad_refuses_smaller_buckets(device):
    batch, _, _ = _setup(device, [0], [20], ForwardMode.EXTEND)
    with pytest.raises(ValueError, match="cannot hold"):
        pad_batch(batch, Bucket(tokens=16))
    with pytest.raises(ValueError, match="narrow"):
        pad_batch(batch, Bucket(tokens=32, pages=0))


@pytest.mark.parametrize("by_decode", [True, False])
def test_padded_verify_replay_semantics(device, by_decode):
    """A verify graph (k = 3): prepare on the dummy verify batch of the bucket (as at capture),
    then run a real batch of ragged rows (4, 2 and 1 new tokens over prefixes: a verify, a
    shorter verify, a decode) relabelled VERIFY and padded to 4 requests x 4 tokens. Real
    rows equal the reference, rows of no request are finite, padding writes only slot 0, and
    the plan depends on the bucket alone (through the decode kernel or the extend kernel)."""
    k, n = 3, 4
    batch, caches, qkv = _setup(device, [21, 50, 7], [4, 2, 1], ForwardMode.VERIFY,
                                spec_info=SpecInfo(num_draft_tokens=k))
    width = batch.page_table.shape[1] + 1
    padded = pad_batch(batch, Bucket(tokens=n * (k + 1), requests=n, pages=width))
    assert padded.num_tokens == 16 and padded.batch_size == 4 and padded.padded_batch_size == 4
    dummy = dummy_batch(ForwardMode.VERIFY, Bucket(tokens=n * (k + 1), requests=n),
                        page_size=PAGE, full_width=width, device=device)
    assert dummy.extend_lens_cpu == [4] * 4 and dummy.spec.num_draft_tokens == k
    tri = _backend(TritonAttentionBackend, device)
    tri.verify_by_decode = by_decode
    t = batch.num_tokens  # 7 real tokens, then the padding request's token, then 8 of none
    pad_qkv = tuple(torch.cat([x, torch.randn((16 - t, *x.shape[1:]), device=device)])
                    for x in qkv)
    out, kc, vc = _run(tri, padded, caches, pad_qkv, prepare_batch=dummy)
    if by_decode:
        assert tri._plan.seq.shape == (16,) and tri._plan.rows[:8].tolist() == [
            0, 0, 0, 0, 1, 1, 2, 3]
        assert tri._plan.seq[:7].tolist() == [22, 23, 24, 25, 51, 52, 8]
    else:
        assert tri._plan.max_extend_len == k + 1 and tri._plan.zero_fill
        assert not out[t + 1:].any()  # rows of no request: zeros
    want, kc_ref, vc_ref = _run(_backend(ReferenceAttentionBackend, device), batch, caches, qkv)
    assert out.shape[0] == 16
    assert rel_err(out[:t], want) < TOL[out.dtype]
    assert torch.isfinite(out).all()
    assert torch.equal(kc[1:], kc_ref[1:]) and torch.equal(vc[1:], vc_ref[1:])
    # an unpadded verify still plans from its own lengths
    tri.prepare(batch)
    if not by_decode:
        assert tri._plan.max_extend_len == 4 and not tri._plan.zero_fill


def test_chain_verify_rows_equal_decode_steps(device):
    """Through the decode kernel, each verify row is computed exactly as a decode step at its
    position with the same split count: bit for bit, so verify and decode agree."""
    prefix, ext = [21, 130], [4, 4]
    batch, caches, qkv = _setup(device, prefix, ext, ForwardMode.VERIFY, dtype=torch.bfloat16,
                                spec_info=SpecInfo(num_draft_tokens=3))
    tri = _backend(TritonAttentionBackend, device)
    out, kc, vc = _run(tri, batch, caches, qkv)
    splits = tri._plan.num_splits
    assert splits > 1
    q = qkv[0]
    for i, (p, e) in enumerate(zip(prefix, ext)):
        for j in range(e):
            row = sum(ext[:i]) + j
            seq = torch.tensor([p + j + 1], dtype=torch.int32, device=device)
            one = decode_attention(q[row:row + 1], kc, vc, batch.page_table[i:i + 1], seq, PAGE,
                                   D**-0.5, splits)
            assert torch.equal(one[0], out[row]), (i, j)


def test_verify_tree_mask_ragged(device):
    """Tree drafts of different sizes in one VERIFY batch (and a one-token row): each request
    carries 1 to n new tokens under the [B, n, n] mask; equals the reference backend."""
    tree = _random_tree(torch.Generator().manual_seed(4), 3, 5).to(device)
    batch, caches, qkv = _setup(device, [11, 40, 7], [5, 2, 1], ForwardMode.VERIFY,
                                dtype=torch.float32,
                                spec_info=SpecInfo(num_draft_tokens=4, tree_mask=tree))
    tri = _backend(TritonAttentionBackend, device)
    _compare(device, batch, caches, qkv, triton_backend=tri)
    assert tri._plan.tree


def test_decode_launch_attrs_reach_kernel(device, monkeypatch):
    """The decode tuning attributes reach every decode-kernel launch (decode, MIXED decode rows,
    chain verify); results equal the reference and the default configuration's."""
    import anyware.kernels.triton.attention_backend as backend_module

    seen = []

    def spy(*args, **kw):
        seen.append({key: kw[key] for key in ("block_n", "num_warps", "num_stages")})
        return decode_attention(*args, **kw)

    monkeypatch.setattr(backend_module, "decode_attention", spy)
    cases = [([0, 40, 7, 90], [1, 1, 1, 1], ForwardMode.DECODE, None),
             ([0, 17, 40, 90], [9, 4, 1, 1], ForwardMode.MIXED, None),
             ([21, 50], [3, 3], ForwardMode.VERIFY, SpecInfo(num_draft_tokens=2))]
    for prefix, ext, mode, spec_info in cases:
        batch, caches, qkv = _setup(device, prefix, ext, mode, spec_info=spec_info)
        tri, default = (_backend(TritonAttentionBackend, device) for _ in range(2))
        tri.split_mixed_min_kv_bytes = default.split_mixed_min_kv_bytes = 0
        tri.decode_block_n, tri.decode_num_warps, tri.decode_num_stages = 32, 8, 3
        _compare(device, batch, caches, qkv, triton_backend=tri)
        want, _, _ = _run(default, batch, caches, qkv)
        out, _, _ = _run(tri, batch, caches, qkv)
        assert rel_err(out, want) < TOL[out.dtype]
    tuned = dict(block_n=32, num_warps=8, num_stages=3)
    none = dict.fromkeys(tuned)
    assert seen == [tuned, none, tuned] * 3


def test_decode_target_programs_keeps_verify_equal_to_decode(device):
    """``decode_target_programs`` changes the split count of every plan alike: each chain-verify
    row still equals, bit for bit, the backend's own decode step of the same requests at that
    position (eager), and a verify graph splits as the decode graph of as many requests."""
    prefix, ext = [21, 130], [4, 4]
    batch, caches, qkv = _setup(device, prefix, ext, ForwardMode.VERIFY, dtype=torch.bfloat16,
                                spec_info=SpecInfo(num_draft_tokens=3))
    default = _backend(TritonAttentionBackend, device)
    default.prepare(batch)
    tri = _backend(TritonAttentionBackend, device)
    tri.decode_target_programs, tri.decode_block_n, tri.decode_num_stages = 8, 32, 3
    out, kc, vc = _run(tri, batch, caches, qkv)
    assert (default._plan.num_splits, tri._plan.num_splits) == (3, 2)
    q, k, v = qkv
    for j in range(4):
        rows = [sum(ext[:i]) + j for i in range(2)]
        pre = [p + j for p in prefix]
        step = ForwardBatch.build(
            mode=ForwardMode.DECODE, input_ids=[0, 0], prefix_lens=pre, extend_lens=[1, 1],
            page_table=batch.page_table, page_size=PAGE, device=device,
            out_slots=new_token_slots(batch.page_table, pre, [1, 1], PAGE).tolist())
        one, _, _ = _run(tri, step, (kc, vc), (q[rows], k[rows], v[rows]))
        assert tri._plan.num_splits == 2
        assert torch.equal(one, out[rows]), j
    # graphs: launch constants from the context limit (256), scratch keyed on the count
    width = batch.page_table.shape[1]
    tri.init_graph_buffers(8, width)
    dummy = dummy_batch(ForwardMode.VERIFY, Bucket(tokens=8, requests=2), page_size=PAGE,
                        full_width=width, device=device)
    for target, splits in ((8, 2), (512, 4)):
        tri.decode_target_programs = target
        tri.prepare(step)
        assert tri._plan.from_buffers and tri._plan.num_splits == splits
        assert (2, splits) in tri._graph_ws
        tri.prepare(dummy)
        assert tri._plan.num_splits == splits
    # a verify graph captured at the old target keeps getting its rows' lengths and pages
    graph = _backend(TritonAttentionBackend, device)
    graph.prepare(dummy)  # the capture: the default target, 4 splits at the context limit
    captured = graph._plan
    graph.decode_target_programs = 8
    graph.prepare(step)  # an eager step in between
    padded = pad_batch(batch, Bucket(tokens=8, requests=2, pages=width))
    graph.update(padded)
    graph._plan = captured  # the replay runs the captured launches
    k_cache, v_cache = (c.clone() for c in caches)
    cache = KVCache(graph.kv_layout(PAGE, k_cache.dtype), [k_cache], [v_cache],
                    k_cache.shape[0] // PAGE)
    got = graph.forward(*qkv, AttentionLayer(0, HQ, HKV, D, D, scale=D**-0.5), cache, padded)
    want, _, _ = _run(_backend(ReferenceAttentionBackend, device), batch, caches, qkv)
    assert captured.num_splits == 4 and rel_err(got, want) < TOL[got.dtype]


def test_decode_tuning_from_platform_options(device):
    """``--platform-option triton_decode_*`` reaches the backend at construction (before any
    graph is captured); absent keys keep the defaults."""
    spec = AttentionSpec(num_layers=1, num_heads=HQ, num_kv_heads=HKV, head_dim=D,
                         v_head_dim=D, dtype=torch.float32, max_batch_size=8,
                         max_context_len=256)
    config = types.SimpleNamespace(extra={"triton_decode_block_n": 16,
                                          "triton_decode_heads_first": True,
                                          "cuda_graph_max_batch_size": 64})
    platform = types.SimpleNamespace(device=torch.device(device), config=config)
    tri = TritonAttentionBackend(platform, spec)
    assert (tri.decode_block_n, tri.decode_heads_first) == (16, True)
    assert (tri.decode_num_warps, tri.decode_num_stages, tri.decode_target_programs) == (None, None, 512)
    assert tri._decode_launch() == dict(block_n=16, num_warps=None, num_stages=None,
                                        heads_first=True, fp16_compute=True,
                                        fused_reduce=True, even_dims=True, k_rows=False,
                                        pdl=False)
    # an fp8 cache's fp16 tiles, the in-launch merge and the unmasked head dims can be turned
    # off, K tiles loaded by rows on (A/B runs)
    config.extra["triton_decode_fp16_compute"] = False
    config.extra["triton_decode_fused_reduce"] = False
    config.extra["triton_decode_even_dims"] = False
    config.extra["triton_decode_k_rows"] = True
    config.extra["triton_pdl"] = True  # set by the platform where the device has it
    launch = TritonAttentionBackend(platform, spec)._decode_launch()
    assert launch["fp16_compute"] is False and launch["fused_reduce"] is False
    assert launch["even_dims"] is False and launch["k_rows"] is True and launch["pdl"] is True
    del config.extra["triton_pdl"]
    # text values (the CLI's, JSON-parsed or not) take the defaults' types: "False" is false
    config.extra.update({"triton_decode_fused_reduce": "False", "triton_decode_k_rows": "on",
                         "triton_decode_block_n": "32", "triton_decode_num_warps": "none"})
    tri = TritonAttentionBackend(platform, spec)
    assert (tri.decode_fused_reduce, tri.decode_k_rows) == (False, True)
    assert (tri.decode_block_n, tri.decode_num_warps) == (32, None)
    for key, bad in (("triton_decode_even_dims", "maybe"), ("triton_decode_block_n", "big")):
        bad_platform = types.SimpleNamespace(device=torch.device(device),
                                             config=types.SimpleNamespace(extra={key: bad}))
        with pytest.raises(ValueError, match=key):
            TritonAttentionBackend(bad_platform, spec)
