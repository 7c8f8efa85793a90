"""A tiny random decoder (a `StepProgram`) built only from the platform's ops and attention
backend: embedding -> [rms_norm, qkv, rotary, paged attention, o-proj, fused add+norm,
gated MLP] x layers -> norm -> LM head. The graphs tier runs it through the platform's
execution strategy and eagerly, and compares logits."""

from __future__ import annotations

import torch
from anyware.kernels.reference import rope_cos_sin
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


class TinyModel:
    def __init__(self, platform, dtype: torch.dtype, page_size: int, num_pages: int = 48,
                 seed: int = 0, vocab: int = 97, hidden: int = 64, heads: int = 4,
                 kv_heads: int = 2, head_dim: int = 16, layers: int = 2, inter: int = 96,
                 verify_tokens: int = 0, fp8: bool = False) -> None:
        """``fp8``: the four projections run through ``ops.fp8_linear`` (W8A8, weights
        quantised per output channel by the reference); where the ops set
        ``fp8_activations``, the norms and SiLU-and-mul hand three of them ``Fp8Rows``, as the
        engine's models do."""
        self.platform, self.ops, self.page_size = platform, platform.ops(), page_size
        self.verify_tokens = verify_tokens  # StepProgram: width of its VERIFY steps (k + 1)
        self.max_requests = 8  # StepProgram: the most requests of a forward (the spec's too)
        self.num_pages = num_pages
        dev, g = platform.device, torch.Generator().manual_seed(seed)
        self.vocab, self.eps = vocab, 1e-5

        # every weight is a buffer of ``self.model`` (the StepProgram's ``model``): a compiled
        # strategy passes them into its programs
        self.model = torch.nn.Module()

        def w(name, *shape, scale=1.0, shift=0.0):
            t = (torch.randn(shape, generator=g) * scale + shift).to(dtype).to(dev)
            self.model.register_buffer(name, t)
            return name

        self.embed = w("embed", vocab, hidden)
        self.layers = []
        for i in range(layers):
            self.layers.append({
                "n1": w(f"l{i}_n1", hidden, scale=0.1, shift=1.0),
                "n2": w(f"l{i}_n2", hidden, scale=0.1, shift=1.0),
                "qkv": w(f"l{i}_qkv", (heads + 2 * kv_heads) * head_dim, hidden, scale=hidden**-0.5),
                "o": w(f"l{i}_o", hidden, heads * head_dim, scale=(heads * head_dim) ** -0.5),
                "gu": w(f"l{i}_gu", 2 * inter, hidden, scale=hidden**-0.5),
                "down": w(f"l{i}_down", hidden, inter, scale=inter**-0.5),
                "attn": AttentionLayer(i, heads, kv_heads, head_dim, head_dim, head_dim**-0.5),
            })
        self.fp8 = fp8
        if fp8:  # e4m3 weights and their scales beside the originals
            from anyware.kernels.reference import quantize_fp8_rows

            for names in self.layers:
                for key in ("qkv", "o", "gu", "down"):
                    q, sc = quantize_fp8_rows(getattr(self.model, names[key]))
                    self.model.register_buffer(names[key] + "_q", q)
                    self.model.register_buffer(names[key] + "_s", sc)
        self.norm = w("norm", hidden, scale=0.1, shift=1.0)
        self.lm_head = w("lm_head", vocab, hidden, scale=hidden**-0.5)
        self.shape = (heads, kv_heads, head_dim)
        spec = AttentionSpec(layers, heads, kv_heads, head_dim, head_dim, dtype,
                             self.max_requests, num_pages * page_size)
        self.attention = platform.attention_backend(spec)
        layout = self.attention.kv_layout(page_size, dtype)
        self.cache: KVCache = layout.allocate(platform, layers, num_pages)
        self.model.register_buffer("cos_sin", rope_cos_sin(head_dim, 4096, 10000.0).to(dev))

    # ------------------------------------------------------------------ StepProgram
    @property
    def kv_cache(self) -> KVCache:
        return self.cache

    def _linear(self, x, name: str) -> torch.Tensor:
        m = self.model
        if self.fp8:
            return self.ops.fp8_linear(x, getattr(m, name + "_q"), getattr(m, name + "_s"))
        return x @ getattr(m, name).t()

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        ops, (hq, hkv, hd) = self.ops, self.shape
        m, lin = self.model, self._linear
        x, residual = getattr(m, self.embed)[batch.input_ids], None
        t = x.shape[0]
        q8 = self.fp8 and ops.fp8_activations  # producers quantise for their projection
        norm = ops.rms_norm_fp8 if q8 else ops.rms_norm
        add_norm = ops.fused_add_rms_norm_fp8 if q8 else ops.fused_add_rms_norm
        act = ops.silu_and_mul_fp8 if q8 else ops.silu_and_mul
        for names in self.layers:
            lw = {k: getattr(m, v) if isinstance(v, str) else v for k, v in names.items()}
            if residual is None:
                residual, h = x, norm(x, lw["n1"], self.eps)
            else:
                h, residual = add_norm(x, residual, lw["n1"], self.eps)
            q, k, v = lin(h, names["qkv"]).split([hq * hd, hkv * hd, hkv * hd], dim=-1)
            q, k = ops.rotary(q.reshape(t, hq, hd), k.reshape(t, hkv, hd), batch.positions,
                              m.cos_sin)
            a = self.attention.forward(q, k, v.reshape(t, hkv, hd), lw["attn"], self.cache, batch)
            h, residual = add_norm(lin(a.reshape(t, -1), names["o"]), residual, lw["n2"],
                                   self.eps)
            x = lin(act(lin(h, names["gu"])), names["down"])
        h, _ = ops.fused_add_rms_norm(x, residual, getattr(m, self.norm), self.eps)
        return h[batch.logits_indices].float() @ getattr(m, self.lm_head).float().t()

    def pad(self, batch: ForwardBatch, bucket: Bucket) -> ForwardBatch:
        return pad_batch(batch, bucket, full_width=self.num_pages)

    def dummy(self, mode: ForwardMode, bucket: Bucket) -> ForwardBatch:
        return dummy_batch(mode, bucket, page_size=self.page_size, full_width=self.num_pages,
                           device=self.platform.device)


def make_batch(model: TinyModel, mode: ForwardMode, tokens: list[list[int]], prefix_lens: list[int],
               pages: list[list[int]], logit_counts: list[int] | None = None) -> ForwardBatch:
    """A batch of requests with explicit pages (no allocator needed). Logit rows: the last
    token of each request, every token in VERIFY (a chain verify of ``len - 1`` drafts each),
    or the last ``logit_counts[i]`` tokens of request ``i`` when given (a MIXED step of
    verifies and decodes)."""
    ps = model.page_size
    width = max(len(p) for p in pages)
    table = torch.zeros((len(pages), width), dtype=torch.int32)
    slots = []
    for i, (toks, pre, pg) in enumerate(zip(tokens, prefix_lens, pages)):
        table[i, : len(pg)] = torch.tensor(pg, dtype=torch.int32)
        slots += [pg[pos // ps] * ps + pos % ps for pos in range(pre, pre + len(toks))]
    verify = mode is ForwardMode.VERIFY
    return ForwardBatch.build(
        mode=mode, input_ids=[t for toks in tokens for t in toks], prefix_lens=prefix_lens,
        extend_lens=[len(t) for t in tokens], page_table=table, out_slots=slots, page_size=ps,
        device=model.platform.device, logits_all=verify, logit_counts=logit_counts,
        spec=SpecInfo(max(len(t) for t in tokens) - 1) if verify else None)
