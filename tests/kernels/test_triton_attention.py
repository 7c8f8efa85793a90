"""Triton decode / extend attention kernels vs the reference ``paged_attention``.

CPU (interpreter): small shapes. GPU: Llama-like heads (32 q / 8 kv, head dim 128) and longer
sequences. Every case draws fresh random caches, shuffled page tables and ragged lengths.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install anyware[cuda])")

from _helpers import TOL, random_paged_kv, rel_err
from anyware.kernels.reference import paged_attention
from anyware.kernels.triton import decode_attention, extend_attention
from anyware.kernels.triton.decode_attention import decode_workspace
from conftest import HAS_GPU

# (num q heads, num kv heads, head dim, length scale)
SHAPE = (32, 8, 128, 40) if HAS_GPU else (4, 2, 32, 1)


def _heads(ratio: int) -> tuple[int, int, int]:
    hq, _hkv, d, _ = SHAPE
    return hq, (hq if ratio == 1 else hq // ratio), d


def _dtypes():
    return [torch.float32, torch.bfloat16] + ([torch.float16] if HAS_GPU else [])


@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("gqa", [1, 4])
@pytest.mark.parametrize("num_splits", [1, 3])
def test_decode_attention(device, page_size, gqa, num_splits):
    hq, hkv, d = _heads(gqa)
    scale_len = SHAPE[3]
    seq_lens = [1, 9 * scale_len, 33 * scale_len, 70 * scale_len]
    _check_decode(device, torch.float32, page_size, hq, hkv, d, seq_lens, num_splits)


@pytest.mark.parametrize("dtype", _dtypes())
def test_decode_attention_low_precision(device, dtype):
    hq, hkv, d = _heads(4)
    seq_lens = [5, 50 * SHAPE[3], 17]
    _check_decode(device, dtype, 16, hq, hkv, d, seq_lens, 4)


def test_decode_attention_window_softcap(device):
    hq, hkv, d = _heads(4)
    seq_lens = [3, 40 * SHAPE[3], 21]
    _check_decode(device, torch.float32, 16, hq, hkv, d, seq_lens, 2, window=12, softcap=3.0)


# fp32 tiles of a GPU run must fit shared memory: deep pipelines on small tiles only
@pytest.mark.parametrize("block_n, num_warps, num_stages", [(32, 8, 3), (16, 2, 4),
                                                            (128, 4, 1)])
def test_decode_attention_launch_config(device, block_n, num_warps, num_stages):
    """Non-default launch configurations (a tuning sweep's grid) give the reference result."""
    hq, hkv, d = _heads(4)
    seq_lens = [1, 9 * SHAPE[3], 70 * SHAPE[3]]
    launch = dict(block_n=block_n, num_warps=num_warps, num_stages=num_stages)
    _check_decode(device, torch.float32, 16, hq, hkv, d, seq_lens, 2, **launch)
    _check_decode(device, torch.bfloat16, 16, hq, hkv, d, seq_lens, 1, **launch)


def test_decode_attention_heads_first_is_the_same_result(device):
    """The grid in (KV head, request, split) order changes which programs run together, not
    what any program computes: bit-identical output."""
    hq, hkv, d = _heads(4)
    seq_lens = [5, 9 * SHAPE[3], 3 * SHAPE[3] + 1]
    k_cache, v_cache, pt = random_paged_kv(seq_lens, 16, hkv, d, torch.bfloat16, device)
    q = torch.randn(len(seq_lens), hq, d, dtype=torch.bfloat16, device=device)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    a, b = (decode_attention(q, k_cache, v_cache, pt, seq, 16, d**-0.5, 2, heads_first=first)
            for first in (False, True))
    assert torch.equal(a, b)
    _check_decode(device, torch.float32, 16, hq, hkv, d, seq_lens, 2, heads_first=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
def test_decode_attention_load_variants_are_the_same_result(device, dtype):
    """Head-dim loads without masks (``even_dims``, the default) read the same values as the
    masked ones: the same output bit for bit. K tiles loaded by rows (``k_rows``) too; their
    transposed tile may sum q.k in another order: equal within rounding. The masked path
    still serves a head dim that is not a power of two."""
    hq, hkv, d = _heads(4)
    seq_lens = [1, 9 * SHAPE[3], 3 * SHAPE[3] + 5]
    cache_dtype = torch.bfloat16 if dtype == torch.float8_e4m3fn else dtype
    k_cache, v_cache, pt = random_paged_kv(seq_lens, 16, hkv, d, cache_dtype, device)
    k_cache, v_cache = k_cache.to(dtype), v_cache.to(dtype)
    q = torch.randn(len(seq_lens), hq, d, dtype=cache_dtype, device=device)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    outs = [decode_attention(q, k_cache, v_cache, pt, seq, 16, d**-0.5, 2, even_dims=even,
                             k_rows=rows)
            for even, rows in ((False, False), (True, False), (True, True), (False, True))]
    assert torch.equal(outs[1], outs[0]) and torch.equal(outs[3], outs[2])
    assert rel_err(outs[2], outs[0]) < (1e-5 if dtype == torch.float32 else 4e-3)  # bf16 rounding
    # a head dim that is not a power of two (the blocks are wider than the rows)
    _check_decode(device, torch.float32, 16, hq, hkv, d - 8 if d > 16 else 24, seq_lens, 2,
                  k_rows=True)


@pytest.mark.parametrize("num_splits", [1, 3, 8])
def test_decode_attention_merge_in_launch(device, num_splits):
    """The splits merged by the split launch's last program (the default) vs by a second
    launch: the same values within fp32 rounding (the same bits with one split). The counters
    are zero after every launch, so one workspace serves launch after launch, as graph
    replays reuse it; both ways match the reference."""
    hq, hkv, d = _heads(4)
    seq_lens = [1, 9 * SHAPE[3], 70 * SHAPE[3], 33 * SHAPE[3] + 5]
    k_cache, v_cache, pt = random_paged_kv(seq_lens, 16, hkv, d, torch.float32, device)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    ws = decode_workspace(len(seq_lens), hq, num_splits, d, device)
    for _ in range(3):
        q = torch.randn(len(seq_lens), hq, d, device=device)
        fused = decode_attention(q, k_cache, v_cache, pt, seq, 16, d**-0.5, num_splits,
                                 workspace=ws)
        assert not ws[2].any()
        two = decode_attention(q, k_cache, v_cache, pt, seq, 16, d**-0.5, num_splits,
                               workspace=ws, fused_reduce=False)
        if num_splits == 1:
            assert torch.equal(fused, two)
        else:
            assert rel_err(fused, two) < 1e-5
    for merge in (True, False):
        _check_decode(device, torch.bfloat16, 16, hq, hkv, d, seq_lens, num_splits,
                      fused_reduce=merge)


def _check_decode(device, dtype, page_size, hq, hkv, d, seq_lens, splits, window=None,
                  softcap=None, **launch):
    k_cache, v_cache, pt = random_paged_kv(seq_lens, page_size, hkv, d, dtype, device)
    q = torch.randn(len(seq_lens), hq, d, dtype=dtype, device=device)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    out = torch.full((len(seq_lens), hq, d), float("nan"), dtype=dtype, device=device)
    decode_attention(q, k_cache, v_cache, pt, seq, page_size, d**-0.5, splits, out=out,
                     sliding_window=window, logit_softcap=softcap, **launch)
    want = paged_attention(q, k_cache, v_cache, pt, page_size, [s - 1 for s in seq_lens],
                           [1] * len(seq_lens), d**-0.5, sliding_window=window,
                           logit_softcap=softcap)
    assert rel_err(out, want) < TOL[dtype]


@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("gqa", [1, 4])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_extend_attention(device, page_size, gqa, with_prefix):
    hq, hkv, d = _heads(gqa)
    s = SHAPE[3]
    ext = [7, 1, 20 * s, 3]
    prefix = [0, 13 * s, 5, 30 * s] if with_prefix else [0, 0, 0, 0]
    _check_extend(device, torch.float32, page_size, hq, hkv, d, prefix, ext)


@pytest.mark.parametrize("dtype", _dtypes())
def test_extend_attention_low_precision(device, dtype):
    hq, hkv, d = _heads(4)
    _check_extend(device, dtype, 16, hq, hkv, d, [4, 0], [9 * SHAPE[3], 18])


def test_extend_as_verify(device):
    # chain speculative verify: every request carries num_draft + 1 tokens over a prefix
    hq, hkv, d = _heads(4)
    _check_extend(device, torch.float32, 16, hq, hkv, d, [17, 40, 3], [4, 4, 4])


def test_extend_window_softcap(device):
    hq, hkv, d = _heads(1)
    _check_extend(device, torch.float32, 16, hq, hkv, d, [10, 0], [25, 7], window=9,
                  softcap=2.5)


def _check_extend(device, dtype, page_size, hq, hkv, d, prefix, ext, window=None,
                  softcap=None):
    seq_lens = [p + e for p, e in zip(prefix, ext)]
    k_cache, v_cache, pt = random_paged_kv(seq_lens, page_size, hkv, d, dtype, device)
    t = sum(ext)
    q = torch.randn(t, hq, d, dtype=dtype, device=device)
    starts = [sum(ext[:i]) for i in range(len(ext))]

    def i32(x):
        return torch.tensor(x, dtype=torch.int32, device=device)

    out = torch.full((t, hq, d), float("nan"), dtype=dtype, device=device)
    extend_attention(q, k_cache, v_cache, pt, i32(prefix), i32(ext), i32(starts), max(ext),
                     page_size, d**-0.5, out=out, sliding_window=window, logit_softcap=softcap)
    want = paged_attention(q, k_cache, v_cache, pt, page_size, prefix, ext, d**-0.5,
                           sliding_window=window, logit_softcap=softcap)
    assert rel_err(out, want) < TOL[dtype]
