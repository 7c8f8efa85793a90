"""Speculative decoding with the graph strategy, on the CPU: the CPU platform is given the
toolkit's ``TorchGraphExecution`` over a fake device module whose "graphs" re-run the forward
on the captured batch's device tensors at replay (``tests.unit.test_torchdev``). Greedy output
with the n-gram drafter and with a draft model equals the eager run without speculation; the
target's verify steps and the draft model's decode and catch-up steps replay graphs, and a
single request's steady stream runs nothing eagerly."""

import dataclasses

import pytest
import torch
from anyware import Engine, SamplingParams
from anyware.kernels.reference import ReferenceAttentionBackend
from anyware_cpu.platform import CpuPlatform
from anyware_torchdev import GraphPool, TorchGraphExecution

from tests.engine.conftest import ENGINE_DEFAULTS
from tests.engine.tiny_models import random_prompts
from tests.unit.test_torchdev import GraphSafeProgram, fake_module

PARAMS = SamplingParams(max_new_tokens=20, temperature=0, ignore_eos=True)


class InferenceSafeProgram(GraphSafeProgram):
    """The model runner's outputs are inference tensors: replay under inference mode."""

    def forward(self, batch):
        out = super().forward(batch)
        if self.module.capturing is not None:
            replay = self.module.capturing.fn

            def fn():
                with torch.inference_mode():
                    replay()
            self.module.capturing.fn = fn
        return out


@pytest.fixture
def fake_graphs(monkeypatch):
    """Graph strategies the engine builds (target first, then the draft model)."""
    module, built, pool = fake_module(), [], GraphPool()

    class FakeDeviceGraphs(TorchGraphExecution):
        def setup(self, program):
            built.append(self)
            super().setup(InferenceSafeProgram(program, module))

    caps = CpuPlatform._capabilities
    monkeypatch.setattr(CpuPlatform, "_capabilities",
                        lambda self: dataclasses.replace(caps(self), graph_capture=True))
    monkeypatch.setattr(CpuPlatform, "_execution_strategy", lambda self, kind: FakeDeviceGraphs(
        module, max_batch_size=4, max_prefill_tokens=64, pool=pool))
    # the reference backend reads lengths from the batch (rebuilt from the device tensors at
    # replay) and returns zeros for rows of no request
    monkeypatch.setattr(ReferenceAttentionBackend, "features", dataclasses.replace(
        ReferenceAttentionBackend.features, padded_prefill=True, padded_verify=True))
    return built


def _generate(model, prompts, **kw):
    with Engine(str(model), **ENGINE_DEFAULTS, **kw) as engine:
        res = engine.generate(prompts, [PARAMS] * len(prompts))
        engine.check_invariants()
    return [r.outputs[0].token_ids for r in res]


@pytest.mark.parametrize("algorithm", ["ngram", "draft"])
def test_speculation_in_graphs_is_greedy_identical(model_dir, fake_graphs, algorithm):
    model = model_dir("llama")
    prompts = random_prompts((9, 23, 5), seed=4)
    prompts[1] = [7, 8, 9, 10] * 4  # a pattern prompt lookup finds
    base = _generate(model, prompts, page_size=4)  # eager (the CPU default)
    assert not fake_graphs
    spec = dict(speculative_algorithm=algorithm, speculative_num_draft_tokens=3)
    if algorithm == "draft":
        spec["speculative_draft_model"] = str(model)
    assert _generate(model, prompts, page_size=4, execution="graphs", **spec) == base
    target = fake_graphs[0]
    assert target.verify_tokens == 4 and target.verify_replays > 0
    if algorithm == "draft":
        draft = fake_graphs[1]
        assert draft.verify_tokens == 2 and draft.pool is target.pool
        assert draft.replays > 0 and draft.verify_replays > 0  # decodes and catch-ups
    # one request: its prefill, every verify, every draft step replays a graph
    fake_graphs.clear()
    one = _generate(model, prompts[1:2], page_size=4, execution="graphs", **spec)
    assert one == base[1:2]
    assert all(s.eager_runs == 0 for s in fake_graphs), [s.eager_runs for s in fake_graphs]
    assert fake_graphs[0].verify_replays > 0


def test_eagle3_catch_ups_replay_verify_graphs(model_dir, fake_graphs, tmp_path):
    """An EAGLE-3 head that predicts its target (acceptance > 1): the head's catch-ups (the
    accepted tokens plus one: EXTEND/MIXED steps of up to k + 1 tokens) replay its verify
    graphs, its drafts its decode graphs; with overlap, nothing in either model runs eagerly
    after the prompt, and greedy output equals the eager run without speculation."""
    from tests.engine.eagle3_heads import cycle_pair

    target, head = cycle_pair(tmp_path / "pair", model_dir("llama"))
    prompts = [[7, 8, 9, 10] * 6]
    base = _generate(target, prompts, page_size=4)
    fake_graphs.clear()
    spec = dict(speculative_algorithm="eagle3", speculative_draft_model=str(head),
                speculative_num_draft_tokens=3, speculative_auto_off=False)
    with Engine(str(target), **{**ENGINE_DEFAULTS, "overlap_schedule": True}, page_size=4,
                execution="graphs", **spec) as engine:
        got = [r.outputs[0].token_ids for r in engine.generate(prompts, [PARAMS])]
        engine.check_invariants()
    assert got == base
    head_graphs, target_graphs = fake_graphs  # the head is built inside the target's worker
    assert head_graphs.verify_tokens == target_graphs.verify_tokens == 4
    assert head_graphs.verify_replays > 0 and target_graphs.verify_replays > 0
    assert head_graphs.eager_runs == 0 and target_graphs.eager_runs == 0


def test_fp8_linear_layers_in_graphs_equal_eager(model_dir, fake_graphs):
    """W8A8 fp8 projections inside the graph strategy's replays (decode, prefill and verify
    graphs): greedy tokens equal eager fp8 execution."""
    model = model_dir("llama")
    prompts = random_prompts((9, 23, 5), seed=6)
    base = _generate(model, prompts, page_size=4, quantization="fp8")
    assert _generate(model, prompts, page_size=4, execution="graphs", quantization="fp8") == base
    assert fake_graphs[0].replays > 0
