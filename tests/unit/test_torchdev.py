"""The torch-device toolkit (``anyware_torchdev``) on the CPU: probe helpers, graph-API
detection, the ``TorchDevicePlatform`` hooks, and ``TorchGraphExecution`` driving a fake
device module whose "graphs" re-run the forward on the captured batch's device tensors at
replay (what a graph-safe backend reads). Replayed logits must equal eager ones (fp32,
tolerance 1e-5) as batch sizes change, so a stale or mis-padded input fails."""

from __future__ import annotations

import contextlib
import dataclasses
import types

import pytest
import torch
from anyware.plugin import (
    CapabilityError,
    EagerExecution,
    ForwardBatch,
    ForwardMode,
    PlatformConfig,
    ProbeResult,
)
from anyware.runtime import PlatformDriver
from anyware_conformance.tinymodel import TinyModel, make_batch
from anyware_cpu.platform import CpuPlatform
from anyware_torchdev import (
    TorchDevicePlatform,
    TorchGraphExecution,
    default_buckets,
    graph_api,
    hidden_by_env,
    module_importable,
    supports_graphs,
    unavailable,
    visible_device_count,
)


# ------------------------------------------------------------------ a fake device module
def fake_module(with_graphs: bool = True) -> types.ModuleType:
    mod = types.ModuleType("fakedev")
    mod.log, mod.capturing = [], None

    class Stream:
        def __init__(self, name="side"):
            self.name = name

        def wait_stream(self, other):
            mod.log.append(f"{self.name} waits {other.name}")

        def synchronize(self):
            mod.log.append(f"sync {self.name}")

    current = Stream("current")

    class NPUGraph:
        """Replays the forward the program registered (``fn``), then the copies the strategy
        made of its output during the capture (``copies``: a real graph records them)."""

        def __init__(self):
            self.fn, self.outputs, self.copies = None, [], []

        def replay(self):
            self.fn()
            for dst, src in self.copies:
                torch.Tensor.copy_(dst, src)

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None):
        mod.log.append(f"capture on {stream.name}")
        mod.capturing = g
        plain = torch.Tensor.copy_

        def copy_(dst, src, *args, **kwargs):
            if any(src is out for out in g.outputs):  # a copy of a registered forward output
                g.copies.append((dst, src))
            return plain(dst, src, *args, **kwargs)

        torch.Tensor.copy_ = copy_
        try:
            yield
        finally:
            torch.Tensor.copy_ = plain
            mod.capturing = None

    @contextlib.contextmanager
    def stream(s):
        yield

    mod.Stream, mod.stream, mod.current_stream = Stream, stream, lambda: current
    mod.synchronize = lambda device=None: mod.log.append("sync device")
    mod.device_count = lambda: 2
    mod.set_device = lambda i: mod.log.append(f"set_device {i}")
    mod.mem_get_info = lambda device=None: (3 << 30, 8 << 30)
    mod.empty_cache = lambda: mod.log.append("empty_cache")
    mod.manual_seed_all = lambda seed: mod.log.append(f"seed {seed}")
    mod.get_device_name = lambda device=None: "Fake Accelerator"
    if with_graphs:
        mod.NPUGraph, mod.graph, mod.graph_pool_handle = NPUGraph, graph, lambda: ("pool",)
    return mod


class GraphSafeProgram:
    """A tiny model as a StepProgram. While the fake module captures, the forward registers a
    replay that re-runs it on the captured batch with host lengths read from its device
    tensors at replay time."""

    def __init__(self, model: TinyModel, module) -> None:
        self.model, self.module, self.attention = model, module, model.attention
        self.pad, self.dummy = model.pad, model.dummy
        self.verify_tokens = model.verify_tokens
        self.max_requests = model.max_requests

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        out = self.model.forward(batch)
        if self.module.capturing is not None:
            def replay(batch=batch, out=out):
                # a graph-safe backend reads seq_lens from the device: it must be current
                assert torch.equal(batch.seq_lens, batch.prefix_lens + batch.extend_lens)
                live = dataclasses.replace(
                    batch, seq_lens_cpu=batch.seq_lens.tolist(),
                    prefix_lens_cpu=batch.prefix_lens.tolist(),
                    extend_lens_cpu=batch.extend_lens.tolist())
                out.copy_(self.model.forward(live))
            self.module.capturing.fn = replay
            self.module.capturing.outputs.append(out)
        return out


@pytest.fixture(scope="module")
def cpu():
    platform = PlatformDriver(CpuPlatform())
    platform.init_device()
    return platform


def _models(cpu, module, num_pages=40, padded_prefill=False, verify_tokens=0):
    eager, graph = (TinyModel(cpu, torch.float32, 4, num_pages, seed=5,
                              verify_tokens=verify_tokens) for _ in range(2))
    # the reference backend handles padding tokens (zeros) and reads lengths from the batch
    # (re-read from the device tensors at replay): allow the padded graphs
    graph.attention.features = dataclasses.replace(
        graph.attention.features, padded_prefill=padded_prefill, padded_verify=verify_tokens > 0)
    return eager, GraphSafeProgram(graph, module)


# ------------------------------------------------------------------ probe helpers
def test_probe_helpers(monkeypatch):
    assert module_importable("json") and not module_importable("no_such_pkg_xyz")
    assert not module_importable("no_such_pkg_xyz.sub")  # a missing parent is not an error
    monkeypatch.setenv("FAKE_VISIBLE", "")
    assert hidden_by_env("OTHER_UNSET_VAR", "FAKE_VISIBLE") == "FAKE_VISIBLE"
    assert visible_device_count(fake_module(), ("FAKE_VISIBLE",)) == 0
    monkeypatch.setenv("FAKE_VISIBLE", "0,1")
    assert visible_device_count(fake_module(), ("FAKE_VISIBLE",)) == 2
    broken = fake_module()
    broken.device_count = lambda: 1 // 0
    assert visible_device_count(broken) == 0
    assert unavailable("no device visible.", "check the driver.") == (
        "no device visible — check the driver")


def test_graph_api_detection():
    assert supports_graphs(fake_module()) and not supports_graphs(fake_module(False))
    assert graph_api(fake_module()).graph_class.__name__ == "NPUGraph"
    not_built = fake_module()
    not_built._is_compiled = lambda: False  # a CPU wheel's torch.cuda / torch.xpu
    assert not supports_graphs(not_built)
    # this CPU build: the torch.cuda placeholders are not a graph API
    assert supports_graphs(torch.cuda) == (torch.version.cuda is not None)


# ------------------------------------------------------------------ the platform base
def _platform_class(module):
    class FakePlatform(TorchDevicePlatform):
        name = "fake"
        device_type = "cpu"  # torch.device("cpu", i) is constructible anywhere
        dist_backend = "gloo"
        plugin_api_version = "2.0"
        visible_devices_env = ("FAKE_VISIBLE",)
        runtime_packages = ("pluggy",)

        @classmethod
        def device_module(cls):
            return module

        @classmethod
        def _probe(cls):
            return ProbeResult.yes()

        def _capabilities(self):
            return dataclasses.replace(CpuPlatform()._capabilities(),
                                       graph_capture=self.graph_capture_supported())

        _create_ops = CpuPlatform._create_ops
        _attention_backends = CpuPlatform._attention_backends
        _communicator = CpuPlatform._communicator

    return FakePlatform


def test_platform_hooks_go_through_the_device_module(monkeypatch):
    monkeypatch.delenv("FAKE_VISIBLE", raising=False)
    module = fake_module()
    plat = PlatformDriver(_platform_class(module)())
    assert plat.capabilities().graph_capture
    assert plat.configure(PlatformConfig()).execution == "graphs"  # the default with graphs
    assert plat.init_device(0, 1) == torch.device("cpu", 1) and "set_device 1" in module.log
    with pytest.raises(CapabilityError, match="only 2"):
        plat.platform._init_device(0, 2)
    assert plat.device_count() == 2
    assert (plat.memory_info().free_bytes, plat.memory_info().total_bytes) == (3 << 30, 8 << 30)
    plat.synchronize()
    plat.empty_cache()
    plat.manual_seed(7)
    assert {"sync device", "empty_cache", "seed 7"} <= set(module.log)
    assert plat.device_name() == "Fake Accelerator"
    del module.mem_get_info  # an older module: total minus this process's reservations
    module.get_device_properties = lambda device: types.SimpleNamespace(total_memory=8 << 30)
    module.memory_reserved = lambda device: 1 << 30
    assert plat.memory_info().free_bytes == 7 << 30
    assert "pluggy" in plat.runtime_versions() and "torch" in plat.runtime_versions()
    host = plat.copy_to_host(torch.arange(3))
    assert host.tolist() == [0, 1, 2]
    plat.platform.config = PlatformConfig(max_batch_size=16, max_prefill_tokens=64,
                                 extra={"fake_graph_max_prefill_tokens": 32})
    strat = plat.execution_strategy("graphs")
    assert isinstance(strat, TorchGraphExecution) and strat.module is module
    assert strat.max_batch_size == 16 and strat.prefill_tokens == (16, 32)
    assert strat.verify_batch_sizes == (1, 2, 4, 8, 16)
    # every strategy of the platform (a target's, a draft model's) shares one graph pool
    assert plat.execution_strategy("graphs").pool is strat.pool
    plat.platform.config = PlatformConfig(max_batch_size=16,
                                          extra={"fake_graph_max_verify_batch_size": 4})
    assert plat.execution_strategy("graphs").verify_batch_sizes == (1, 2, 4)
    with pytest.raises(CapabilityError, match="compiled"):
        plat.platform._execution_strategy("compiled")


def test_platform_without_graphs_defaults_to_eager():
    plat = PlatformDriver(_platform_class(fake_module(with_graphs=False))())
    assert not plat.capabilities().graph_capture
    assert plat.configure(PlatformConfig()).execution == "eager"
    with pytest.raises(CapabilityError, match="graphs"):
        plat.configure(PlatformConfig(execution="graphs"))


# ------------------------------------------------------------------ the graph strategy
def test_decode_graphs_replay_like_eager(cpu):
    module = fake_module()
    eager_model, program = _models(cpu, module)
    eager, strat = EagerExecution(), TorchGraphExecution(module, max_batch_size=4)
    eager.setup(eager_model)
    strat.setup(program)
    assert sorted(strat._graphs) == [1, 2, 4] and not strat._prefill  # no padded_prefill
    # each capture waits for the current stream (the dummy batch's copies) first
    captures = [i for i, e in enumerate(module.log) if e.startswith("capture")]
    assert len(captures) == 3
    assert all(module.log[i - 2:i] == ["side waits current", "sync side"] for i in captures)
    assert module.log[-2:] == ["current waits side", "sync device"]
    gen = torch.Generator().manual_seed(1)
    pages = [[1 + 3 * i, 2 + 3 * i, 3 + 3 * i] for i in range(6)]
    prompts = [torch.randint(1, 97, (5,), generator=gen).tolist() for _ in range(6)]
    for model in (eager_model, program.model):
        model.forward(make_batch(model, ForwardMode.EXTEND, prompts, [0] * 6, pages))
    lens, feed = [5] * 6, [[3]] * 6
    for reqs in ([0, 1, 2], [4], [0, 1, 2, 3, 5], [1, 3], [0, 1, 2, 3]):
        def batch(model, reqs=reqs):
            return make_batch(model, ForwardMode.DECODE, [feed[i] for i in reqs],
                              [lens[i] for i in reqs], [pages[i] for i in reqs])
        want, got = eager.run(batch(eager_model)), strat.run(batch(program.model))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        for j, i in enumerate(reqs):
            lens[i] += 1
            feed[i] = [int(want[j].argmax())]
    assert (strat.replays, strat.eager_runs) == (4, 1)  # 5 requests run eagerly


def test_decode_buckets_stop_at_the_programs_rows(cpu):
    """A program with fewer rows than ``max_batch_size`` (the running-request cap the core
    sized from the KV pool) gets no wider graph: its own row count is the last bucket."""
    module = fake_module()
    _, program = _models(cpu, module)
    program.max_requests = 6
    strat = TorchGraphExecution(module, max_batch_size=16, max_verify_batch_size=4)
    assert strat.batch_sizes == (1, 2, 4, 8, 16)
    strat.setup(program)
    assert strat.batch_sizes == (1, 2, 4, 6) and sorted(strat._graphs) == [1, 2, 4, 6]
    assert strat.bucket_for(5) == 6 and strat.bucket_for(7) is None
    assert default_buckets(320) == (*default_buckets(256), 288, 320)
    assert default_buckets(300)[-3:] == (256, 288, 300)


def test_prefill_graphs_replay_like_eager(cpu):
    module = fake_module()
    eager_model, program = _models(cpu, module, padded_prefill=True)
    eager, strat = EagerExecution(), TorchGraphExecution(module, max_batch_size=2,
                                                         max_prefill_tokens=64)
    eager.setup(eager_model)
    strat.setup(program)
    assert strat.prefill_tokens == (16, 32, 64)
    gen = torch.Generator().manual_seed(2)
    for i, n in enumerate((7, 16, 40)):
        pages = [list(range(1 + 12 * i, 13 + 12 * i))]
        prompt = torch.randint(1, 97, (n,), generator=gen).tolist()
        want = eager.run(make_batch(eager_model, ForwardMode.EXTEND, [prompt], [0], pages))
        got = strat.run(make_batch(program.model, ForwardMode.EXTEND, [prompt], [0], pages))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # the KV the replay wrote serves the next decode step
        nxt = [[int(want[0].argmax())]]
        want = eager.run(make_batch(eager_model, ForwardMode.DECODE, nxt, [n], pages))
        got = strat.run(make_batch(program.model, ForwardMode.DECODE, nxt, [n], pages))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert strat.prefill_replays == 3 and strat.replays == 3


def test_verify_graphs_replay_like_eager(cpu):
    """Verify graphs (k = 3: 4 tokens per request) per request bucket: uniform verifies with k
    or fewer drafts, MIXED steps of verifies and decodes (n-gram drafting) and 2-token
    catch-ups with a prefix (a draft model) all replay through them, padded; logits equal
    eager ones and the KV they wrote serves the steps after. Nothing in the stream runs
    eagerly except a batch above the largest verify bucket."""
    module = fake_module()
    eager_model, program = _models(cpu, module, verify_tokens=4)
    eager, strat = EagerExecution(), TorchGraphExecution(module, max_batch_size=4,
                                                         max_prefill_tokens=0)
    eager.setup(eager_model)
    strat.setup(program)
    assert sorted(strat._verify) == [1, 2, 4] and strat.verify_tokens == 4
    assert sorted(strat._graphs) == [1, 2, 4]
    gen = torch.Generator().manual_seed(3)
    pages = [list(range(1 + 6 * i, 7 + 6 * i)) for i in range(6)]
    prompts = [torch.randint(1, 97, (5 + i,), generator=gen).tolist() for i in range(6)]
    for model in (eager_model, program.model):
        model.forward(make_batch(model, ForwardMode.EXTEND, prompts, [0] * 6, pages))
    lens, last = [5 + i for i in range(6)], [7] * 6
    V, M, E, D = ForwardMode.VERIFY, ForwardMode.MIXED, ForwardMode.EXTEND, ForwardMode.DECODE
    steps = [  # (mode, requests, drafts per request)
        (V, [0, 1, 2], [3, 3, 3]), (V, [4], [3]), (V, [0, 1, 2, 3], [1, 1, 1, 1]),
        (M, [0, 1, 3, 5], [3, 0, 2, 1]), (E, [1, 2, 4], [1, 1, 1]), (D, [0, 2], [0, 0]),
        (V, [1, 2], [2, 2]), (M, [5, 4, 0], [0, 3, 3]),
    ]
    for mode, reqs, nd in steps:
        feed = [[last[i], *torch.randint(1, 97, (d,), generator=gen).tolist()]
                for i, d in zip(reqs, nd)]
        counts = [1 if mode is E else d + 1 for d in nd]

        def batch(model, reqs=reqs, feed=feed, mode=mode, counts=counts):
            return make_batch(model, mode, feed, [lens[i] for i in reqs],
                              [pages[i] for i in reqs], logit_counts=counts)
        want, got = eager.run(batch(eager_model)), strat.run(batch(program.model))
        assert got.shape == want.shape == (sum(counts), 97)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        row = 0
        for i, f, c in zip(reqs, feed, counts):
            lens[i] += len(f)
            row += c
            last[i] = int(want[row - 1].argmax())
    assert (strat.verify_replays, strat.replays, strat.eager_runs) == (7, 1, 0)
    # above the largest verify bucket, a tree mask, or a row longer than k + 1: eagerly
    reqs = [0, 1, 2, 3, 5]
    five = make_batch(program.model, V, [[last[i], 1] for i in reqs], [lens[i] for i in reqs],
                      [pages[i] for i in reqs])
    assert strat.verify_bucket_for(five) is None
    tree = dataclasses.replace(five, spec=dataclasses.replace(
        five.spec, tree_mask=torch.ones((5, 2, 2), dtype=torch.bool)))
    assert strat.verify_bucket_for(tree) is None
    long = make_batch(program.model, E, [[1] * 5], [3], [pages[0]])
    assert strat.verify_bucket_for(long) is None
    assert strat.verify_bucket_for(make_batch(program.model, E, [[1] * 4], [3],
                                              [pages[0]])) == 1


def test_no_verify_graphs_without_the_feature_or_the_width(cpu):
    module = fake_module()
    _, program = _models(cpu, module, verify_tokens=4)
    program.attention.features = dataclasses.replace(program.attention.features,
                                                     padded_verify=False)
    strat = TorchGraphExecution(module, max_batch_size=2, max_prefill_tokens=0)
    strat.setup(program)
    assert not strat._verify and strat.verify_batch_sizes == ()
    _, program = _models(cpu, module, verify_tokens=0)  # a program without VERIFY steps
    strat = TorchGraphExecution(module, max_batch_size=2, max_prefill_tokens=0)
    strat.setup(program)
    assert not strat._verify
    _, program = _models(cpu, module, verify_tokens=3)
    strat = TorchGraphExecution(module, max_batch_size=8, max_prefill_tokens=0,
                                max_verify_batch_size=2)
    strat.setup(program)
    assert sorted(strat._verify) == [1, 2] and sorted(strat._graphs) == [1, 2, 4, 8]


def test_setup_without_graph_api_is_a_capability_error(cpu):
    module = fake_module(with_graphs=False)
    _, program = _models(cpu, module)
    with pytest.raises(CapabilityError, match="no graph capture"):
        TorchGraphExecution(module).setup(program)
