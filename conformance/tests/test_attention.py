"""Tier attention: the platform's attention backend over a paged KV cache, against the fp32
reference, for every mode it claims (extend with/without prefix, decode, multi-token verify,
tree verify, ragged tree verify, sliding window, logit soft-cap), page sizes from its capabilities, GQA ratios 1
and 4, head dims 64 and 128, ragged batches. Also checks the new K/V landed exactly at
``out_slots`` and nothing else in the cache changed. A backend that declares an fp8 e4m3 KV
cache (``kv_dtypes``) runs every mode again over an fp8 cache, for each model dtype (core
shapes; tolerance: one e4m3 rounding, ``tolerances.py``)."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import AttentionLayer, ForwardMode
from anyware_conformance import paged
from anyware_conformance.inputs import DTYPES


def _tree(gen, batch: int, n: int) -> torch.Tensor:
    """Random draft trees: token a sees token b iff b is a or an ancestor of a."""
    mask = torch.zeros((batch, n, n), dtype=torch.bool)
    for i in range(batch):
        parent = [-1] + [int(torch.randint(0, j, (1,), generator=gen)) for j in range(1, n)]
        for a in range(n):
            b = a
            while b >= 0:
                mask[i, a, b] = True
                b = parent[b]
    return mask


# name: (needs, mode, prefix_lens, extend_lens, extras)
CASES = {
    "extend": ((), ForwardMode.EXTEND, [0, 0, 0], [5, 1, 19], {}),
    "extend_prefix": (("attention.extend_with_prefix",), ForwardMode.EXTEND,
                      [7, 0, 37], [4, 3, 6], {}),
    "decode": (("attention.decode",), ForwardMode.DECODE, [9, 0, 70, 16], [1, 1, 1, 1], {}),
    "verify": (("attention.verify",), ForwardMode.VERIFY, [5, 23], [4, 4], {}),
    "tree_verify": (("attention.verify", "attention.tree_mask"), ForwardMode.VERIFY,
                    [11, 3], [5, 5], {"tree": True}),
    # tree drafts of different sizes in one batch (and a plain decode row): each request
    # carries 1 to n new tokens under a [B, n, n] mask
    "tree_verify_ragged": (("attention.verify", "attention.tree_mask"), ForwardMode.VERIFY,
                           [11, 3, 40], [5, 2, 1], {"tree": True}),
    "sliding_window": (("attention.sliding_window",), ForwardMode.EXTEND, [30, 2], [6, 9],
                       {"sliding_window": 8}),
    "logit_softcap": (("attention.logit_softcap",), ForwardMode.EXTEND, [12, 0], [5, 7],
                      {"logit_softcap": 5.0}),
}
SHAPES = {  # (num_heads, num_kv_heads, head_dim)
    "mha-d64": (4, 4, 64),
    "gqa4-d128": (8, 2, 128),
    "mha-d128": (4, 4, 128),
    "gqa4-d64": (8, 2, 64),
}
CORE_SHAPES = ("mha-d64", "gqa4-d128")

PARAMS = []
for case, (needs, *_rest) in CASES.items():
    for shape in SHAPES:
        for dtype in DTYPES:
            marks = [pytest.mark.anyware(
                tier="attention", capability=f"attention.{case}",
                needs=("dtype", "kv_dtype", "page_size", *needs),
                **({} if shape in CORE_SHAPES else {"profile": "full"}))]
            PARAMS.append(pytest.param(case, shape, dtype, marks=marks, id=f"{case}-{shape}-{dtype}"))

FP8 = "float8_e4m3fn"
FP8_PARAMS = [
    pytest.param(case, shape, dtype, FP8, id=f"{case}-{shape}-{dtype}-kv_fp8", marks=[
        pytest.mark.anyware(tier="attention", capability=f"attention.{case}.kv_fp8",
                            needs=("dtype", "kv_dtype", "page_size", *needs))])
    for case, (needs, *_rest) in CASES.items() for shape in CORE_SHAPES for dtype in DTYPES
]


@pytest.mark.parametrize("case,shape,dtype", PARAMS)
def test_attention(platform, conf, gen, case, shape, dtype, page_size):
    _check(platform, conf, gen, case, shape, dtype, page_size, None)


@pytest.mark.parametrize("case,shape,dtype,kv_dtype", FP8_PARAMS)
def test_attention_fp8_kv(platform, conf, gen, case, shape, dtype, kv_dtype, page_size):
    """The same modes over an fp8 e4m3 cache: the new K/V stored exactly as the reference
    casts them (saturated, nearest even), the output within one e4m3 rounding."""
    _check(platform, conf, gen, case, shape, dtype, page_size, kv_dtype)


def _check(platform, conf, gen, case, shape, dtype, page_size, kv_dtype):
    _needs, mode, prefix_lens, extend_lens, extra = CASES[case]
    hq, hkv, hd = SHAPES[shape]
    scale = 0.8 * hd**-0.5  # not the default, so a backend that ignores layer.scale fails
    spec = paged.spec_for(hq, hkv, hd, dtype, len(prefix_lens), 128)
    backend = platform.attention_backend(spec)
    tree = _tree(gen, len(prefix_lens), max(extend_lens)) if extra.get("tree") else None
    sc = paged.build(
        platform, backend, gen, dtype=dtype, page_size=page_size, num_heads=hq,
        num_kv_heads=hkv, head_dim=hd, prefix_lens=prefix_lens, extend_lens=extend_lens,
        mode=mode, scale=scale, tree_mask=tree, sliding_window=extra.get("sliding_window"),
        logit_softcap=extra.get("logit_softcap"), kv_dtype=kv_dtype,
    )
    layer = AttentionLayer(0, hq, hkv, hd, hd, scale, sliding_window=extra.get("sliding_window"),
                           logit_softcap=extra.get("logit_softcap"))
    backend.prepare(sc.batch)
    backend.update(sc.batch)
    with conf.runs(backend):
        out = backend.forward(sc.q, sc.k, sc.v, layer, sc.cache, sc.batch)
    platform.synchronize()
    conf.on_device("attention output", out)
    assert out.dtype == sc.q.dtype, f"attention returned {out.dtype}, expected {sc.q.dtype}"
    conf.equal("k cache after the step", sc.cache.k[0], sc.k_cache_expected, op="kv_cache",
               dtype=kv_dtype or dtype)
    conf.equal("v cache after the step", sc.cache.v[0], sc.v_cache_expected, op="kv_cache",
               dtype=kv_dtype or dtype)
    conf.close("attention output", out, sc.expected, op="attention", dtype=kv_dtype or dtype,
               reduction=sc.reduction)
