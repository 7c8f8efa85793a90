"""GPU check of `TorchGraphExecution` on `torch.cuda` with the Triton backend on a toy one-layer "model":
captured-and-replayed decode (padded to a bucket) must equal the eager forward."""

from __future__ import annotations

import types

import torch
from anyware.kernels.triton.attention_backend import TritonAttentionBackend
from anyware.plugin import (
    AttentionLayer,
    AttentionSpec,
    Bucket,
    EagerExecution,
    ForwardBatch,
    ForwardMode,
    KVCache,
    dummy_batch,
    pad_batch,
)
from anyware_torchdev import TorchGraphExecution

HQ, HKV, D, PS, VOCAB = 32, 8, 128, 16, 64
WIDTH = 128  # page-table columns of the batches below


class ToyProgram:
    def __init__(self, backend, cache, num_pages):
        self.attention = backend
        self.cache = cache
        self.layer = AttentionLayer(0, HQ, HKV, D, D, scale=D**-0.5)
        g = torch.Generator(device="cuda").manual_seed(0)
        self.emb = torch.randn(VOCAB, (HQ + 2 * HKV) * D, device="cuda", generator=g,
                               dtype=torch.bfloat16)

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        x = self.emb[batch.input_ids]
        q, k, v = x.split([HQ * D, HKV * D, HKV * D], dim=-1)
        t = x.shape[0]
        o = self.attention.forward(q.reshape(t, HQ, D), k.reshape(t, HKV, D),
                                   v.reshape(t, HKV, D), self.layer, self.cache, batch)
        return o.float().reshape(t, -1)[batch.logits_indices]

    def pad(self, batch: ForwardBatch, bucket: Bucket) -> ForwardBatch:
        return pad_batch(batch, bucket, full_width=WIDTH)

    def dummy(self, mode: ForwardMode, bucket: Bucket) -> ForwardBatch:
        return dummy_batch(mode, bucket, page_size=PS, full_width=WIDTH, device="cuda")


def check_graphs() -> dict:
    spec = AttentionSpec(1, HQ, HKV, D, D, torch.bfloat16, 64, 2048)
    platform = types.SimpleNamespace(device=torch.device("cuda"))
    num_pages = 1 + 64 * (2048 // PS)
    layout_backend = TritonAttentionBackend(platform, spec)
    layout = layout_backend.kv_layout(PS, torch.bfloat16)
    cache = KVCache(layout, [torch.randn(layout.k_shape(num_pages), device="cuda",
                                         dtype=torch.bfloat16)],
                    [torch.randn(layout.v_shape(num_pages), device="cuda",
                                 dtype=torch.bfloat16)], num_pages)
    graph_prog = ToyProgram(TritonAttentionBackend(platform, spec), cache, num_pages)
    eager_prog = ToyProgram(TritonAttentionBackend(platform, spec), cache, num_pages)
    strat = TorchGraphExecution(torch.cuda, max_batch_size=16)
    strat.setup(graph_prog)
    eager = EagerExecution()
    eager.setup(eager_prog)
    results = []
    for bs in (1, 3, 5, 16, 20):
        prefix = torch.randint(1, 2000, (bs,)).tolist()
        perm = torch.randperm(num_pages - 1)[: bs * 128] + 1
        pt = perm.view(bs, 128).int()
        slots = [int(pt[i, p // PS]) * PS + p % PS for i, p in enumerate(prefix)]
        batch = ForwardBatch.build(
            mode=ForwardMode.DECODE, input_ids=torch.randint(0, VOCAB, (bs,)).tolist(),
            prefix_lens=prefix, extend_lens=[1] * bs, page_table=pt, out_slots=slots,
            page_size=PS, device="cuda")
        got = strat.run(batch)
        want = eager.run(batch)
        err = float((got - want).norm() / want.norm())
        results.append({"batch": bs, "rel_err_vs_eager": err, "ok": err < 1e-2})
    return {"cases": results, "replays": strat.replays, "eager_runs": strat.eager_runs,
            "ok": all(r["ok"] for r in results) and strat.replays == 4}
