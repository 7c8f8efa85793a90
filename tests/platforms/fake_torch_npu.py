"""A recording fake ``torch_npu`` for CPU tests.

Every call is bound to the op's schema from ``platforms/npu/schemas/torch_npu_ops.json``
(parsed with ``torch._C.parse_schema``, i.e. torch's own reading of Ascend's declaration):
unknown keywords, keyword-only arguments passed by position, missing required arguments and
values of the wrong type fail the test. The fake then computes the op's documented result
with torch on the CPU, so the plugin's wiring (layouts, masks, lengths) is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

SCHEMAS = Path(__file__).resolve().parents[2] / "platforms" / "npu" / "schemas" / "torch_npu_ops.json"


def load_schemas() -> dict[str, torch._C.FunctionSchema]:
    ops = json.loads(SCHEMAS.read_text())["ops"]
    return {name: torch._C.parse_schema(op["schema"]) for name, op in ops.items()}


def _type_ok(type_str: str, value) -> bool:
    if type_str.startswith("Optional["):
        return value is None or _type_ok(type_str[len("Optional["):-1], value)
    if type_str.startswith("List["):
        inner = type_str[len("List["):-1]
        return isinstance(value, list | tuple) and all(_type_ok(inner, v) for v in value)
    if type_str == "Tensor":
        return isinstance(value, torch.Tensor)
    if type_str in ("int", "SymInt"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_str == "float":
        return isinstance(value, float | int) and not isinstance(value, bool)
    if type_str == "bool":
        return isinstance(value, bool)
    if type_str == "str":
        return isinstance(value, str)
    raise AssertionError(f"schema type {type_str} not handled by the fake")


class FakeTorchNpu:
    """Records ``(op, bound_arguments)`` in ``calls``."""

    def __init__(self) -> None:
        self.schemas = load_schemas()
        self.calls: list[tuple[str, dict]] = []

    def _bind(self, name: str, args: tuple, kwargs: dict) -> dict:
        schema = self.schemas[name]
        params = list(schema.arguments)
        positional = [a for a in params if not a.kwarg_only]
        assert len(args) <= len(positional), f"{name}: {len(args)} positional arguments, schema takes {len(positional)}"
        bound = {}
        for a, v in zip(positional, args):
            bound[a.name] = v
        known = {a.name for a in params}
        for k, v in kwargs.items():
            assert k in known, f"{name}: unknown argument {k!r} (schema: {schema})"
            assert k not in bound, f"{name}: {k!r} given twice"
            bound[k] = v
        for a in params:
            if a.name not in bound:
                assert a.has_default_value(), f"{name}: required argument {a.name!r} missing"
                continue
            assert _type_ok(str(a.type), bound[a.name]), (
                f"{name}: {a.name} must be {a.type}, got {type(bound[a.name]).__name__}")
        self.calls.append((name, bound))
        return bound

    # ------------------------------------------------------------ ops (documented semantics)
    def npu_rms_norm(self, *args, **kwargs):
        b = self._bind("npu_rms_norm", args, kwargs)
        x, eps = b["self"].float(), b.get("epsilon", 1e-6)
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return (x * rstd * b["gamma"].float()).to(b["self"].dtype), rstd

    def npu_add_rms_norm(self, *args, **kwargs):
        b = self._bind("npu_add_rms_norm", args, kwargs)
        total = b["x1"] + b["x2"]
        x, eps = total.float(), b.get("epsilon", 1e-6)
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return (x * rstd * b["gamma"].float()).to(total.dtype), rstd, total

    def npu_rotary_mul(self, *args, **kwargs):
        b = self._bind("npu_rotary_mul", args, kwargs)
        x, r1, r2 = b["self"], b["r1"], b["r2"]
        assert x.dim() == 4 and r1.dim() == 4, "npu_rotary_mul takes 4-D (BSND) tensors"
        mode = b.get("rotary_mode", "half")
        xf = x.float()
        if mode == "half":
            x1, x2 = xf.chunk(2, -1)
            rot = torch.cat([-x2, x1], -1)
        else:
            assert mode == "interleave", mode
            rot = torch.stack([-xf[..., 1::2], xf[..., 0::2]], -1).flatten(-2)
        return (xf * r1.float() + rot * r2.float()).to(x.dtype)

    def npu_swiglu(self, *args, **kwargs):
        b = self._bind("npu_swiglu", args, kwargs)
        a, g = b["self"].float().chunk(2, dim=b.get("dim", -1))
        return (F.silu(a) * g).to(b["self"].dtype)

    def _npu_reshape_and_cache(self, *args, **kwargs):
        b = self._bind("_npu_reshape_and_cache", args, kwargs)
        kc, vc = b["key_cache"], b["value_cache"]
        assert kc.dim() == 4, "key_cache is [num_blocks, block_size, H, D]"
        slots = b["slot_indices"].long()
        kc.view(-1, *kc.shape[2:])[slots] = b["key"]
        vc.view(-1, *vc.shape[2:])[slots] = b["value"]

    def npu_scatter_nd_update_(self, *args, **kwargs):
        b = self._bind("npu_scatter_nd_update_", args, kwargs)
        b["self"][b["indices"][:, 0]] = b["updates"]
        return b["self"]

    def npu_grouped_matmul(self, *args, **kwargs):
        b = self._bind("npu_grouped_matmul", args, kwargs)
        assert b.get("split_item") == 2 and b.get("group_type") == 0
        (x,), (w,) = b["x"], b["weight"]
        counts = b["group_list"].tolist()
        if b.get("group_list_type", 0) == 0:  # cumulative
            counts = [c - p for c, p in zip(counts, [0, *counts[:-1]])]
        outs, start = [], 0
        for e, n in enumerate(counts):
            outs.append(x[start:start + n].float() @ w[e].float())
            start += n
        return [torch.cat(outs).to(x.dtype)]

    def npu_fused_infer_attention_score(self, *args, **kwargs):
        b = self._bind("npu_fused_infer_attention_score", args, kwargs)
        q, key, value = b["query"], b["key"], b["value"]
        hq, hkv = b["num_heads"], b["num_key_value_heads"]
        table, bs = b["block_table"], b["block_size"]
        kv_lens = b["actual_seq_lengths_kv"]
        layout = b.get("input_layout", "BSH")
        d = key.shape[-1] // hkv
        if layout == "BSH":
            assert q.dim() == 3 and q.shape[1] == 1, "decode: query [B, 1, H*D]"
            q_rows = [q[i, 0].view(1, hq, d) for i in range(q.shape[0])]
        else:
            assert layout == "TND" and b.get("sparse_mode") == 3 and b.get("atten_mask") is not None
            ends = b["actual_seq_lengths"]
            q_rows = [q[s:e] for s, e in zip([0, *ends[:-1]], ends)]
        outs = []
        for i, qi in enumerate(q_rows):
            n, s = qi.shape[0], kv_lens[i]
            blocks = table[i, : -(-s // bs)].long()
            k = key[blocks].reshape(-1, hkv, d)[:s].float().repeat_interleave(hq // hkv, 1)
            v = value[blocks].reshape(-1, hkv, value.shape[-1] // hkv)[:s].float().repeat_interleave(hq // hkv, 1)
            scores = torch.einsum("qhd,khd->hqk", qi.float(), k) * b["scale"]
            allowed = torch.arange(s)[None, :] <= torch.arange(n)[:, None] + (s - n)
            scores = scores.masked_fill(~allowed, float("-inf"))
            outs.append(torch.einsum("hqk,khd->qhd", scores.softmax(-1), v))
        out = torch.cat(outs).to(q.dtype)
        if layout == "BSH":
            out = out.reshape(q.shape[0], 1, -1)
        return out, torch.empty(0)
