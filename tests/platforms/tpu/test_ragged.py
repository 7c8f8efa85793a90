"""The jittable ragged paged attention equals jax's ``ref_ragged_paged_attention`` (same call
and layout; fp32, 1e-5), padding rows and padded sequences included; the KV write is a
functional scatter into the interleaved layout. (The Pallas kernel needs a TPU: not run.)"""

import numpy as np
import pytest
from anyware_tpu import jaxenv
from anyware_tpu.ragged import ragged_paged_attention_xla, write_kv


@pytest.mark.parametrize(("window", "cap"), [(None, None), (3, None), (None, 5.0)])
def test_matches_jax_reference(window, cap):
    jax = jaxenv.jax_module()
    jnp = jax.numpy
    from jax.experimental.pallas.ops.tpu.ragged_paged_attention import (
        ref_ragged_paged_attention,
    )

    rng = np.random.default_rng(0)
    hq, hk, d, ps = 4, 2, 16, 4
    kv = jnp.asarray(rng.standard_normal((12, ps, 2 * hk, d)), jnp.float32)
    q_lens, kv_lens = [3, 1, 5], [7, 4, 5]  # prefix extend, decode, fresh prefill
    pages = jnp.asarray([[1, 2, 3], [4, 5, 0], [6, 7, 0]], jnp.int32)
    cu = jnp.asarray(np.concatenate([[0], np.cumsum(q_lens)]), jnp.int32)
    q = jnp.asarray(rng.standard_normal((9, hq, d)), jnp.float32)
    kw = dict(sm_scale=0.25, sliding_window=window, soft_cap=cap)
    want = ref_ragged_paged_attention(q, kv, jnp.asarray(kv_lens, jnp.int32), pages, cu,
                                      jnp.asarray([3], jnp.int32), **kw)
    # padded to 12 rows and 4 sequences, jitted
    fn = jax.jit(lambda *a: ragged_paged_attention_xla(*a, **kw))
    got = fn(jnp.concatenate([q, jnp.ones((3, hq, d))]), kv,
             jnp.asarray([*kv_lens, 0], jnp.int32),
             jnp.concatenate([pages, jnp.zeros((1, 3), jnp.int32)]),
             jnp.concatenate([cu, cu[-1:]]), jnp.asarray([3], jnp.int32))
    np.testing.assert_allclose(np.asarray(got[:9]), np.asarray(want), atol=1e-5, rtol=1e-5)
    assert not np.asarray(got[9:]).any()


def test_write_kv_interleaves_at_slots():
    jnp = jaxenv.jax_module().numpy
    kv = jnp.zeros((3, 2, 4, 2), jnp.float32)  # 3 pages of 2, 2 KV heads, dim 2
    k = jnp.arange(8, dtype=jnp.float32).reshape(2, 2, 2) + 1
    v = -k
    new = np.asarray(write_kv(kv, k, v, jnp.asarray([3, 4], jnp.int32)))
    flat = new.reshape(6, 4, 2)
    np.testing.assert_array_equal(flat[3, 0::2], np.asarray(k[0]))
    np.testing.assert_array_equal(flat[3, 1::2], np.asarray(v[0]))
    np.testing.assert_array_equal(flat[4, 0::2], np.asarray(k[1]))
    assert not flat[[0, 1, 2, 5]].any() and not np.asarray(kv).any()  # functional
