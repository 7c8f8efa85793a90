"""Speculative decoding through the Triton attention backend in graph mode, on the CPU (the
Triton interpreter): the CPU platform is given the Triton backend and the toolkit's graph
strategy over a fake device module whose "graph" replays the forward with the attention plan
captured with it (launch constants frozen at capture, as a device graph freezes them) on the
captured batch's tensors, after the strategy's graph-safe ``update``. Greedy output with a
draft model under these graphs equals eager output without speculation, and the target's
verifies and the draft's decodes and catch-ups replay graphs."""

import dataclasses

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.kernels.triton.attention_backend import TritonAttentionBackend
from anyware_cpu.platform import CpuPlatform
from anyware_torchdev import TorchGraphExecution

from tests.engine.conftest import model_dir  # noqa: F401 - the fixture
from tests.engine.tiny_models import random_prompts
from tests.unit.test_torchdev import fake_module


class FrozenPlanProgram:
    """A StepProgram whose captured forward replays with the plan prepared at capture."""

    def __init__(self, program, module) -> None:
        self.program, self.module, self.attention = program, module, program.attention
        self.pad, self.dummy = program.pad, program.dummy
        self.verify_tokens = program.verify_tokens
        self.max_requests = program.max_requests

    def forward(self, batch):
        out = self.program.forward(batch)
        if self.module.capturing is not None:
            plan, attn = self.attention._plan, self.attention

            def replay(batch=batch, out=out, plan=plan):
                current, attn._plan = attn._plan, plan
                try:
                    with torch.inference_mode():
                        out.copy_(self.program.forward(batch))
                finally:
                    attn._plan = current
            self.module.capturing.fn = replay
            self.module.capturing.outputs.append(out)
        return out


@pytest.fixture
def triton_graphs(monkeypatch):
    module, built = fake_module(), []

    class FakeDeviceGraphs(TorchGraphExecution):
        def setup(self, program):
            built.append(self)
            super().setup(FrozenPlanProgram(program, module))

    caps = CpuPlatform._capabilities
    monkeypatch.setattr(CpuPlatform, "_capabilities",
                        lambda self: dataclasses.replace(caps(self), graph_capture=True))
    monkeypatch.setattr(CpuPlatform, "_attention_backends", lambda self: [TritonAttentionBackend])
    monkeypatch.setattr(CpuPlatform, "_execution_strategy", lambda self, kind: FakeDeviceGraphs(
        module, max_batch_size=2, max_prefill_tokens=32, warmup=0))
    return built


def test_draft_model_speculation_in_triton_graphs(model_dir, triton_graphs):  # noqa: F811
    model = str(model_dir("llama"))
    prompts = random_prompts((9, 14), seed=6)
    params = [SamplingParams(max_new_tokens=10, temperature=0, ignore_eos=True)] * 2
    common = dict(platform="cpu", dtype="float32", show_progress=False, page_size=16,
                  max_running_requests=2, attention_backend="triton")
    with Engine(model, **common) as engine:
        base = [r.outputs[0].token_ids for r in engine.generate(prompts, params)]
    with Engine(model, **common, execution="graphs", speculative_algorithm="draft",
                speculative_num_draft_tokens=3, speculative_draft_model=model) as engine:
        got = [r.outputs[0].token_ids for r in engine.generate(prompts, params)]
        stats = engine.stats()
    assert got == base
    assert stats.verify_steps > 0 and stats.accepted_tokens == stats.drafted_tokens
    target, draft = triton_graphs
    assert target.verify_tokens == 4 and target.verify_replays > 0
    assert draft.verify_tokens == 2 and draft.replays > 0 and draft.verify_replays > 0
