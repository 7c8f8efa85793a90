"""Tier memory: device allocation through ``Platform.allocate`` (zero-filled, the asked shape
and dtype, on the platform's device), the core KV pool built on it in the backend's declared
layout (one distinct K and V tensor per layer), and the page allocator's invariants."""

from __future__ import annotations

import pytest
import torch
from anyware_conformance.inputs import DTYPES, randn


def _memory():
    try:
        import anyware.memory as memory
    except ImportError as exc:  # the engine's memory package is missing from this install
        pytest.skip(f"crash: anyware.memory cannot be imported: {exc}")
    return memory


@pytest.mark.anyware(tier="memory", capability="memory.allocate", needs=("kv_dtype",))
@pytest.mark.parametrize("dtype", DTYPES)
def test_allocate(platform, conf, dtype):
    dt = getattr(torch, dtype)
    for shape in [(5, 3, 7), (64, 2, 128), (1,)]:
        t = platform.allocate(shape, dt)
        conf.on_device("allocate", t)
        assert tuple(t.shape) == shape and t.dtype == dt, f"allocate({shape}, {dt}) -> {t.shape} {t.dtype}"
        conf.equal(f"allocate{shape} is zero-filled", t.cpu(), torch.zeros(shape, dtype=dt),
                   op="allocate", dtype=dtype)


FP8 = "float8_e4m3fn"


@pytest.mark.anyware(tier="memory", capability="memory.kv_pool", needs=("kv_dtype", "page_size"))
@pytest.mark.parametrize("dtype", (*DTYPES, FP8))
def test_kv_pool(platform, conf, gen, dtype, page_size):
    """A pool of 3 layers in ``dtype`` (fp8 e4m3 where the backend declares it: then the
    store casts fp32 K/V, one of them past the e4m3 range, which must saturate to 448)."""
    memory = _memory()
    from anyware_conformance.paged import spec_for

    dt = getattr(torch, dtype)
    backend = platform.attention_backend(spec_for(4, 2, 64, dtype, 4, 256, layers=3))
    layout = backend.kv_layout(page_size, dt)
    pool = memory.KVPool(platform, layout, 3, 7)
    cache = pool.cache
    assert cache.num_pages % layout.alignment == 0 and cache.num_pages >= 7
    assert len(cache.k) == len(cache.v) == 3
    for i in range(3):
        for name, t, shape in (("k", cache.k[i], layout.k_shape(cache.num_pages)),
                               ("v", cache.v[i], layout.v_shape(cache.num_pages))):
            conf.on_device(f"{name}[{i}]", t)
            assert tuple(t.shape) == tuple(shape) and t.dtype == dt, f"{name}[{i}]: {t.shape} {t.dtype}"
            assert not bool(t.any()), f"{name}[{i}] is not zero-filled"
    # the layers do not alias: a store into one layer leaves the others untouched
    alloc = memory.PageAllocator(cache.num_pages)
    pages = alloc.alloc(2)
    slots = torch.tensor([p * page_size + o for p in pages for o in range(page_size)])
    src = torch.float32 if dtype == FP8 else dt
    k = randn(gen, (len(slots), layout.num_kv_heads, layout.head_dim), src, platform.device)
    v = randn(gen, (len(slots), layout.num_kv_heads, layout.v_head_dim), src, platform.device)
    if dtype == FP8:
        k[0, 0, :2] = torch.tensor([1000.0, -1e6])  # saturate, never NaN
    idx = layout.slot_index(slots.to(platform.device))
    if layout.head_major:  # KernelOps.store_kv addresses slot-ordered caches only
        cache.k[1][idx], cache.v[1][idx] = k.to(dt), v.to(dt)
    else:
        platform.ops().store_kv(cache.k[1], cache.v[1], k, v, slots.to(platform.device))
    want = k.cpu().clamp(-448.0, 448.0).to(dt) if dtype == FP8 else k.cpu()
    conf.equal("k[1] at the allocated slots", cache.k[1][idx].cpu(), want,
               op="kv_cache", dtype=dtype)
    for i in (0, 2):
        assert not bool(cache.k[i].any()) and not bool(cache.v[i].any()), f"layer {i} changed"


@pytest.mark.anyware(tier="memory", capability="memory.page_allocator")
def test_page_allocator_invariants(gen):
    memory = _memory()
    n = 33
    alloc = memory.PageAllocator(n)
    held: list[list[int]] = []
    owned: set[int] = set()
    for _ in range(300):
        if held and torch.rand((), generator=gen) < 0.45:
            pages = held.pop(int(torch.randint(0, len(held), (), generator=gen)))
            alloc.free(pages)
            owned -= set(pages)
        else:
            want = int(torch.randint(0, 6, (), generator=gen))
            free_before = alloc.num_free
            try:
                pages = alloc.alloc(want)
            except memory.OutOfPagesError:
                assert want > free_before and alloc.num_free == free_before
                continue
            assert pages is not None and len(pages) == want, f"alloc({want}) -> {pages}"
            assert 0 not in pages, "the scratch page 0 was handed out"
            assert not owned & set(pages), f"pages {owned & set(pages)} handed out twice"
            assert all(0 < p < n for p in pages)
            owned |= set(pages)
            held.append(pages)
        assert alloc.num_free + len(owned) == n - 1, "free + in use != total"
    with pytest.raises(ValueError):
        alloc.free([next(iter(owned))] * 2 if owned else [1])


@pytest.mark.anyware(tier="memory", capability="memory.async_copy", since="0.1.0")
def test_copy_to_host_is_valid_after_its_event(platform, conf, gen):
    """Overlap scheduling's handshake: ``copy_to_host`` of a tensor produced by queued work,
    then ``record_event``; once the event synchronizes the host copy holds the values, and
    later work on the device does not change it."""
    x = randn(gen, (512, 512), torch.float32, platform.device)
    y = x
    for _ in range(8):  # queue enough work that an early read would see stale values
        y = torch.tanh(y @ x * 1e-3) + y
    host = platform.copy_to_host(y)
    event = platform.record_event()
    event.synchronize()
    assert event.query(), "record_event(): query() is False after synchronize()"
    assert host.device.type == "cpu", f"copy_to_host returned a tensor on {host.device}"
    want = y.cpu().clone()  # .cpu() of a host tensor is the tensor itself
    y.add_(1.0)  # device work after the copy must not reach the host copy
    platform.synchronize()
    conf.equal("host copy after the event", host, want, op="copy", dtype="float32")
