"""Triton attention on the GPU vs the reference, by head dim, GQA ratio and dtype."""

import torch
from anyware.kernels.reference import paged_attention
from anyware.kernels.triton.decode_attention import decode_attention
from anyware.kernels.triton.extend_attention import extend_attention

torch.manual_seed(0)
ps = 16
for dt in (torch.float32, torch.bfloat16):
    for D in (16, 32, 64, 128):
        for G in (1, 2, 4):
            Hk = 2
            H = Hk * G
            pre, ext = [0, 0, 0, 7], [5, 40, 64, 30]
            seq = [p + e for p, e in zip(pre, ext)]
            npages = sum((s + ps - 1) // ps for s in seq) + 2
            kc = torch.randn(npages * ps, Hk, D, device="cuda", dtype=dt)
            vc = torch.randn(npages * ps, Hk, D, device="cuda", dtype=dt)
            P = max((s + ps - 1) // ps for s in seq)
            pt = torch.zeros(len(seq), P, dtype=torch.int32)
            nxt = 1
            for i, s in enumerate(seq):
                for j in range((s + ps - 1) // ps):
                    pt[i, j] = nxt
                    nxt += 1
            pt = pt.cuda()
            q = torch.randn(sum(ext), H, D, device="cuda", dtype=dt)
            ref = paged_attention(q.float(), kc.float(), vc.float(), pt, ps, pre, ext, D**-0.5)
            e_t = torch.tensor(ext, dtype=torch.int32, device="cuda")
            p_t = torch.tensor(pre, dtype=torch.int32, device="cuda")
            st = (torch.cumsum(e_t, 0) - e_t).to(torch.int32)
            out = extend_attention(q, kc, vc, pt, p_t, e_t, st, max(ext), ps, D**-0.5)
            e1 = ((out.float() - ref).norm() / ref.norm()).item()
            qd = torch.randn(len(seq), H, D, device="cuda", dtype=dt)
            refd = paged_attention(qd.float(), kc.float(), vc.float(), pt, ps,
                                   [s - 1 for s in seq], [1] * len(seq), D**-0.5)
            errs = []
            for splits in (1, 4):
                o = decode_attention(qd, kc, vc, pt, torch.tensor(seq, dtype=torch.int32,
                                     device="cuda"), ps, D**-0.5, splits)
                errs.append(((o.float() - refd).norm() / refd.norm()).item())
            print(f"{dt!s:15s} D={D:3d} G={G} extend rel {e1:.2e} decode rel {errs[0]:.2e}/{errs[1]:.2e}")
