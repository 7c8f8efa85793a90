"""The tpu platform's in-program sampler (JAX, uint32 noise) against the reference
``KernelOps.sample``: identical noise bits, identical tokens over mixed greedy/temperature/
top-k/top-p/min-p rows, logprobs of the chosen tokens to fp32 rounding, padding rows greedy."""

import numpy as np
import torch
from anyware.kernels.reference.sampling import sample as ref_sample
from anyware.kernels.reference.sampling import sampling_noise
from anyware.plugin import SamplingTensors


def _params(rows: int, vocab: int, g: torch.Generator) -> SamplingTensors:
    return SamplingTensors(
        temperatures=torch.rand(rows, generator=g) * 1.5 + 0.2,
        top_ks=torch.randint(1, vocab + 5, (rows,), generator=g, dtype=torch.int32),
        top_ps=torch.rand(rows, generator=g) * 0.9 + 0.1,
        min_ps=torch.rand(rows, generator=g) * 0.2,
        seeds=torch.randint(-2**62, 2**62, (rows,), generator=g, dtype=torch.int64),
        steps=torch.randint(0, 2**40, (rows,), generator=g, dtype=torch.int64),
        greedy=torch.rand(rows, generator=g) < 0.25)


def test_in_program_sampler_matches_reference():
    from anyware_tpu import jaxenv
    from anyware_tpu.sampling import host_params, noise, sample

    jax = jaxenv.jax_module()
    g = torch.Generator().manual_seed(0)
    rows, vocab, padded = 48, 131, 64
    st = _params(rows, vocab, g)
    logits = torch.randn(rows, vocab, generator=g) * 4
    hp = host_params(st, padded)
    bits = np.asarray(noise(hp["seed_lo"][:rows], hp["seed_hi"][:rows], hp["steps"][:rows], vocab))
    assert np.array_equal(bits, sampling_noise(st.seeds, st.steps, vocab).numpy())

    x = np.zeros((padded, vocab), np.float32)
    x[:rows] = logits.numpy()
    x[rows:] = np.random.default_rng(1).standard_normal((padded - rows, vocab))
    tokens, logprobs = jax.jit(sample)(x, hp)
    tokens, logprobs = np.asarray(tokens), np.asarray(logprobs)
    want = ref_sample(logits, st).numpy()
    assert np.array_equal(tokens[:rows], want)
    assert np.array_equal(tokens[rows:], x[rows:].argmax(-1))  # padding rows are greedy
    lp = torch.log_softmax(logits, -1).gather(1, torch.from_numpy(want)[:, None])[:, 0]
    np.testing.assert_allclose(logprobs[:rows], lp.numpy(), atol=1e-5)

    greedy = host_params(None, padded)  # every row greedy: the argmax branch
    tokens, _ = jax.jit(sample)(x, greedy)
    assert np.array_equal(np.asarray(tokens), x.argmax(-1))
