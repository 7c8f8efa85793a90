"""The one padding entry point (``anyware.plugin.padding``): shapes and fill values for every
mode, the two cases CUDA graphs use equal to the tensors of the helpers they replace, and a
tiny model on the reference attention backend giving the same logits for the real rows of a
padded batch as for the unpadded batch (fp32, tolerance 1e-5: only row counts change)."""

from __future__ import annotations

import pytest
import torch
from anyware.plugin import Bucket, ForwardBatch, ForwardMode, SpecInfo, dummy_batch, pad_batch
from anyware.runtime import PlatformDriver
from anyware_conformance.tinymodel import TinyModel, make_batch
from anyware_cpu.platform import CpuPlatform

PS = 4


@pytest.fixture(scope="module")
def model() -> TinyModel:
    platform = PlatformDriver(CpuPlatform())
    platform.init_device()
    return TinyModel(platform, torch.float32, PS, num_pages=24, seed=3)


def _batch(mode, tokens, prefix, pages, spec=None, logits_all=False):
    """A batch with explicit pages, optional verify metadata."""
    table = torch.zeros((len(pages), max(len(p) for p in pages)), dtype=torch.int32)
    slots = []
    for i, (toks, pre, pg) in enumerate(zip(tokens, prefix, pages)):
        table[i, : len(pg)] = torch.tensor(pg, dtype=torch.int32)
        slots += [pg[pos // PS] * PS + pos % PS for pos in range(pre, pre + len(toks))]
    return ForwardBatch.build(mode=mode, input_ids=[t for x in tokens for t in x],
                              prefix_lens=prefix, extend_lens=[len(t) for t in tokens],
                              page_table=table, out_slots=slots, page_size=PS, device="cpu",
                              logits_all=logits_all, spec=spec)


# mode -> (tokens per request, prefix lens, pages per request, spec, logits_all)
CASES = {
    ForwardMode.DECODE: ([[5], [7], [9]], [6, 2, 9], [[1, 2], [3], [4, 5, 6]], None, False),
    ForwardMode.EXTEND: ([[3, 4, 5, 6, 7], [8, 9]], [0, 3], [[1, 2], [3, 4]], None, False),
    ForwardMode.MIXED: ([[3, 4, 5, 6], [8]], [2, 5], [[1, 2], [3, 4]], None, False),
    ForwardMode.VERIFY: ([[3, 4, 5], [6, 7, 8]], [4, 2], [[1, 2], [3, 4]],
                         SpecInfo(2, torch.tensor([[[1, 0, 0], [1, 1, 0], [1, 0, 1]]] * 2,
                                                  dtype=torch.bool)), True),
}


@pytest.mark.parametrize("mode", list(CASES), ids=lambda m: m.value)
def test_pad_semantics(mode):
    tokens, prefix, pages, spec, logits_all = CASES[mode]
    batch = _batch(mode, tokens, prefix, pages, spec, logits_all)
    b, t, w = batch.batch_size, batch.num_tokens, batch.page_table.shape[1]
    padded = pad_batch(batch, Bucket(tokens=t + 2 + 3, requests=b + 2, pages=w + 2))
    bn, tn = b + 2, t + 5
    assert (padded.batch_size, padded.num_tokens, padded.page_table.shape) == (bn, tn, (bn, w + 2))
    assert (padded.padded_batch_size, padded.padded_num_tokens, padded.mode) == (bn, tn, mode)
    # real rows unchanged
    for name in ("input_ids", "positions", "out_slots"):
        assert torch.equal(getattr(padded, name)[:t], getattr(batch, name)), name
    for name in ("seq_lens", "prefix_lens", "extend_lens", "extend_start"):
        assert torch.equal(getattr(padded, name)[:b], getattr(batch, name)), name
    assert torch.equal(padded.page_table[:b, :w], batch.page_table)
    # padding requests: one token each after the real tokens, seq 1, scratch page
    assert padded.extend_lens[b:].tolist() == [1, 1] and padded.seq_lens[b:].tolist() == [1, 1]
    assert padded.prefix_lens[b:].tolist() == [0, 0]
    assert padded.extend_start[b:].tolist() == [t, t + 1]
    assert padded.page_table[b:].eq(0).all() and padded.page_table[:, w:].eq(0).all()
    # padding tokens (requests' and loose ones): input 0, position 0, scratch slot 0
    for name in ("input_ids", "positions", "out_slots"):
        assert getattr(padded, name)[t:].eq(0).all(), name
    assert padded.extend_lens_cpu == [*batch.extend_lens_cpu, 1, 1]
    assert padded.seq_lens_cpu == [*batch.seq_lens_cpu, 1, 1]
    assert padded.prefix_lens_cpu == [*batch.prefix_lens_cpu, 0, 0]
    # logit rows: the real ones, then one per padding request
    assert padded.logits_indices.tolist() == [*batch.logits_indices.tolist(), t, t + 1]
    if spec is not None:
        assert padded.spec.tree_mask.shape == (bn, 3, 3)
        assert torch.equal(padded.spec.tree_mask[:b], spec.tree_mask)
        assert padded.spec.tree_mask[b:, 0, 0].all()
    # the input batch is not modified
    assert batch.num_tokens == t and batch.padded_num_tokens is None


def test_pad_none_fields_keep_sizes_and_markers():
    batch = _batch(ForwardMode.EXTEND, [[1, 2, 3]], [0], [[1]])
    same = pad_batch(batch, Bucket())
    assert same.num_tokens == 3 and same.batch_size == 1 and same.page_table.shape == (1, 1)
    assert same.padded_batch_size is None and same.padded_num_tokens is None
    assert pad_batch(batch, Bucket(), full_width=5).page_table.shape == (1, 5)
    reqs = pad_batch(batch, Bucket(requests=3))
    assert reqs.num_tokens == 5 and reqs.padded_num_tokens is None and reqs.padded_batch_size == 3


@pytest.mark.parametrize("bucket,match", [
    (Bucket(requests=1), "down to"), (Bucket(tokens=6), "cannot hold"),
    (Bucket(tokens=8, requests=4), "cannot hold"), (Bucket(pages=1), "narrow"),
])
def test_pad_rejects_smaller_buckets(bucket, match):
    batch = _batch(ForwardMode.EXTEND, [[1, 2, 3, 4], [5, 6, 7]], [0, 0], [[1, 2], [3]])
    with pytest.raises(ValueError, match=match):
        pad_batch(batch, bucket)
    with pytest.raises(ValueError, match="must be >= 0"):
        Bucket(tokens=-1)


# ------------------------------------------------------------------ what CUDA graphs replay
def _legacy_pad_decode(batch: ForwardBatch, batch_size: int, max_pages: int) -> dict:
    """The tensors the removed ``pad_decode_batch`` built (kept here as the reference)."""
    b, pad = batch.batch_size, batch_size - batch.batch_size
    table = torch.zeros((batch_size, max_pages), dtype=torch.int32)
    table[:b, : batch.page_table.shape[1]] = batch.page_table

    def cat(x, fill):
        return torch.cat([x, torch.full((pad,), fill, dtype=x.dtype)])

    return {"input_ids": cat(batch.input_ids, 0), "positions": cat(batch.positions, 0),
            "seq_lens": cat(batch.seq_lens, 1), "prefix_lens": cat(batch.prefix_lens, 0),
            "extend_lens": cat(batch.extend_lens, 1),
            "extend_start": torch.arange(batch_size, dtype=torch.int32), "page_table": table,
            "out_slots": cat(batch.out_slots, 0),
            "logits_indices": torch.arange(batch_size, dtype=torch.int64)}


def _assert_same(got: ForwardBatch, want: dict):
    for name, tensor in want.items():
        value = getattr(got, name)
        assert value.dtype == tensor.dtype and torch.equal(value, tensor), name


def test_decode_bucket_equals_previous_helper():
    tokens, prefix, pages, _, _ = CASES[ForwardMode.DECODE]
    batch = _batch(ForwardMode.DECODE, tokens, prefix, pages)
    padded = pad_batch(batch, Bucket(requests=8), full_width=10)
    _assert_same(padded, _legacy_pad_decode(batch, 8, 10))
    assert padded.seq_lens_cpu == batch.seq_lens_cpu + [1] * 5
    assert padded.padded_num_tokens is None and padded.mode is ForwardMode.DECODE
    dummy = dummy_batch(ForwardMode.DECODE, Bucket(requests=4), page_size=PS, full_width=10,
                        device="cpu")
    legacy = ForwardBatch.build(mode=ForwardMode.DECODE, input_ids=[0] * 4, prefix_lens=[0] * 4,
                                extend_lens=[1] * 4, page_table=torch.zeros((4, 10), dtype=torch.int32),
                                out_slots=[0] * 4, page_size=PS, device="cpu")
    _assert_same(dummy, {n: getattr(legacy, n) for n in _legacy_pad_decode(legacy, 4, 10)})
    assert dummy.padded_num_tokens is None


def test_fresh_prefill_bucket_equals_previous_helper():
    batch = _batch(ForwardMode.EXTEND, [[3, 4, 5, 6, 7]], [0], [[1, 2]])
    padded = pad_batch(batch, Bucket(tokens=16), full_width=10)
    z = torch.zeros(11, dtype=torch.int64)
    table = torch.zeros((1, 10), dtype=torch.int32)
    table[0, :2] = torch.tensor([1, 2])
    _assert_same(padded, {
        "input_ids": torch.cat([batch.input_ids, z]), "positions": torch.cat([batch.positions, z]),
        "out_slots": torch.cat([batch.out_slots, z]), "page_table": table,
        "seq_lens": batch.seq_lens, "prefix_lens": batch.prefix_lens,
        "extend_lens": batch.extend_lens, "extend_start": batch.extend_start,
        "logits_indices": batch.logits_indices})
    assert padded.padded_num_tokens == 16 and padded.padded_batch_size is None
    assert padded.extend_lens_cpu == [5] and padded.seq_lens_cpu == [5]
    dummy = dummy_batch(ForwardMode.EXTEND, Bucket(tokens=16), page_size=PS, full_width=10,
                        device="cpu")
    assert dummy.padded_num_tokens == 16 and dummy.extend_lens_cpu == [16]
    assert dummy.positions.tolist() == list(range(16)) and dummy.logits_indices.tolist() == [15]
    assert dummy.page_table.shape == (1, 10) and not dummy.page_table.any()
    assert not dummy.out_slots.any() and not dummy.input_ids.any()


@pytest.mark.parametrize("mode", list(ForwardMode)[:4], ids=lambda m: m.value)
def test_dummy_shapes(mode):
    d = dummy_batch(mode, Bucket(tokens=13, requests=3, pages=5), page_size=PS, full_width=9,
                    device="cpu")
    assert (d.mode, d.num_tokens, d.batch_size, d.page_table.shape) == (mode, 13, 3, (3, 5))
    assert (d.padded_num_tokens, d.padded_batch_size) == (13, 3)
    assert not (d.out_slots.any() or d.page_table.any() or d.input_ids.any())
    want = {ForwardMode.DECODE: [1, 1, 1], ForwardMode.VERIFY: [4, 4, 4]}.get(mode, [11, 1, 1])
    assert d.extend_lens_cpu == want and d.prefix_lens_cpu == [0, 0, 0]
    if mode is ForwardMode.VERIFY:
        assert d.spec.num_draft_tokens == 3 and d.logits_indices.numel() == 12


# ------------------------------------------------------------------ logits of real rows
@pytest.mark.parametrize("mode", list(CASES), ids=lambda m: m.value)
def test_padded_batch_gives_the_same_logits(model, mode):
    """Write the prefixes' KV, then run the step unpadded and padded (padding requests,
    loose padding tokens and a wider page table): the real logit rows agree."""
    tokens, prefix, pages, spec, logits_all = CASES[mode]
    gen = torch.Generator().manual_seed(0)
    cached = [i for i, p in enumerate(prefix) if p]
    history = [torch.randint(1, model.vocab, (prefix[i],), generator=gen).tolist() for i in cached]
    model.forward(make_batch(model, ForwardMode.EXTEND, history, [0] * len(cached),
                             [pages[i] for i in cached]))
    batch = _batch(mode, tokens, prefix, pages, spec, logits_all)
    want = model.forward(batch)
    padded = model.pad(batch, Bucket(tokens=batch.num_tokens + 3 + 4, requests=batch.batch_size + 3))
    assert padded.page_table.shape[1] == model.num_pages
    got = model.forward(padded)
    rows = batch.logits_indices.numel()
    assert got.shape[0] == rows + 3
    torch.testing.assert_close(got[:rows], want, rtol=1e-5, atol=1e-5)


def test_tiny_model_fp8_rows_path():
    """The conformance tiny model with fp8 projections: where the ops set ``fp8_activations``
    its norms and SiLU hand the projections ``Fp8Rows`` (the graphs tier replays that path on
    a GPU); on the reference ops the logits equal those of each projection quantising its own
    input."""
    platform = PlatformDriver(CpuPlatform())
    platform.init_device()
    tiny = TinyModel(platform, torch.bfloat16, PS, num_pages=24, seed=4, fp8=True)
    tokens, prefix, pages, _, _ = CASES[ForwardMode.EXTEND]
    batch = _batch(ForwardMode.EXTEND, tokens, prefix, pages)
    ops = tiny.ops
    assert ops.fp8_activations
    before = ops.calls["quantize_fp8"]
    fused = tiny.forward(batch)
    assert ops.calls["quantize_fp8"] - before == 2 * 3  # 2 layers x (2 norms, SiLU)
    ops.fp8_activations = False
    try:
        plain = tiny.forward(batch)
    finally:
        del ops.fp8_activations  # back to the class's True
    assert ops.fp8_activations and torch.equal(fused, plain)
