"""Bucket choice of the compiled strategy with the core's padding: padding requests carry a
token each, so the token bucket holds the real tokens plus them; the padded batch fits."""

import pytest
import torch
from anyware.plugin import Bucket, ForwardBatch, ForwardMode, pad_batch
from anyware.plugin.errors import CapabilityError


def _batch(extend_lens, mode=ForwardMode.EXTEND):
    n = sum(extend_lens)
    return ForwardBatch.build(mode=mode, input_ids=list(range(1, n + 1)),
                              prefix_lens=[0] * len(extend_lens), extend_lens=extend_lens,
                              page_table=torch.ones((len(extend_lens), 2), dtype=torch.int32),
                              out_slots=list(range(16, 16 + n)), page_size=16, device="cpu")


def test_bucket_counts_padding_tokens_and_logit_rows():
    from anyware_tpu.buckets import BucketOptions

    opts = BucketOptions(max_tokens=64, max_requests=8, min_tokens=8)
    b = opts.bucket_for(_batch([3, 2, 2]))  # 7 tokens, 3 requests -> B 4 needs T >= 8
    assert (b.tokens, b.requests, b.logits) == (8, 4, 4)
    b = opts.bucket_for(_batch([4, 2, 2]))  # 8 tokens + 1 padding request -> T 16
    assert (b.tokens, b.requests, b.logits) == (16, 4, 4)
    padded = pad_batch(_batch([4, 2, 2]), Bucket(tokens=b.tokens, requests=b.requests))
    assert padded.num_tokens == 16 and padded.batch_size == 4
    assert padded.logits_indices.shape[0] <= b.logits
    with pytest.raises(CapabilityError, match="largest compiled bucket"):
        opts.bucket_for(_batch([60, 4, 1]))  # 65 tokens + a padding request
