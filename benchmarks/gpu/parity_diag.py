"""Why would fp32 greedy decoding on CUDA differ from the CPU? Compare, on tiny models,
eager vs graph execution vs the CPU platform, and each Triton op vs its reference."""

import tempfile
from pathlib import Path

import torch
from anyware import Engine, SamplingParams
from anyware.kernels import reference as ref
from anyware.kernels.triton.ops import TritonOps

from tests.engine.tiny_models import build_model, random_prompts

print("allow_tf32", torch.backends.cuda.matmul.allow_tf32, "precision",
      torch.get_float32_matmul_precision())
a, b = torch.randn(256, 512, device="cuda"), torch.randn(512, 256, device="cuda")
err = ((a @ b).double() - a.double() @ b.double()).abs().max().item()
print(f"fp32 matmul max abs err vs fp64: {err:.2e}")

ops = TritonOps()
x = torch.randn(37, 64, device="cuda")
w = torch.randn(64, device="cuda")
print("rms_norm", (ops.rms_norm(x, w, 1e-6) - ref.rms_norm(x, w, 1e-6)).abs().max().item())
q, k = torch.randn(37, 4, 16, device="cuda"), torch.randn(37, 2, 16, device="cuda")
pos = torch.randint(0, 500, (37,), device="cuda")
cs = ref.rope_cos_sin(16, 512, 10000.0).cuda()
qa, ka = ops.rotary(q, k, pos, cs)
qb, kb = ref.apply_rotary(q, k, pos, cs)
print("rotary", (qa - qb).abs().max().item(), (ka - kb).abs().max().item())
g = torch.randn(37, 192, device="cuda")
print("silu", (ops.silu_and_mul(g) - ref.silu_and_mul(g)).abs().max().item())

d = build_model("llama", Path(tempfile.mkdtemp()))
prompts = random_prompts((5, 17, 40, 9, 64))
p = SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=True, logprobs=0)
results = {}
for name, kw in [("cpu", dict(platform="cpu")),
                 ("cuda-eager-p1", dict(platform="cuda", execution="eager", page_size=1)),
                 ("cuda-graphs-p1", dict(platform="cuda", execution="graphs", page_size=1)),
                 ("cuda-eager-p16", dict(platform="cuda", execution="eager", page_size=16)),
                 ("cuda-graphs-p16", dict(platform="cuda", execution="graphs", page_size=16)),
                 ("cuda-torchattn", dict(platform="cuda", execution="eager", page_size=16,
                                         attention_backend="torch-reference"))]:
    try:
        with Engine(str(d), show_progress=False, dtype="float32", **kw) as e:
            results[name] = e.generate(prompts, p)
    except Exception as exc:
        print(name, "failed:", repr(exc)[:300])
base = results["cpu"]
for name, outs in results.items():
    worst, first = 0.0, []
    for o, r in zip(outs, base):
        a_, b_ = o.outputs[0], r.outputs[0]
        n = next((i for i, (s, t) in enumerate(zip(a_.token_ids, b_.token_ids)) if s != t), None)
        first.append(n)
        m = n if n is not None else len(a_.token_ids)
        for la, lb in zip(a_.logprobs[:m], b_.logprobs[:m]):
            worst = max(worst, abs(la.logprob - lb.logprob))
    print(f"{name:18s} first mismatch per prompt {first}  max |dlogprob| before it {worst:.2e}")
