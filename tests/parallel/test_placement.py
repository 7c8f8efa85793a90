"""Where a process sits in a tensor-parallel group (no processes started), sliced checkpoint
reads, and the CLI's parallel options."""

from __future__ import annotations

import argparse

import pytest
import torch
from anyware.cli.options import (
    ExpertParallelSizeError,
    add_engine_options,
    add_model_options,
    engine_kwargs,
)
from anyware.distributed import PlacementError, resolve_placement
from anyware.model.weights import CheckpointTensor
from safetensors import safe_open
from safetensors.torch import save_file

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
            "MASTER_PORT": "1"}


def test_spawned_single_node():
    p = resolve_placement(4, environ={})
    assert (p.rank, p.world_size, p.local_rank, p.from_env) == (0, 4, 0, False)
    assert p.spawn == ((1, 1), (2, 2), (3, 3))
    assert p.init_method.startswith("tcp://127.0.0.1:")


def test_second_node_spawns_its_own_ranks():
    p = resolve_placement(4, nnodes=2, node_rank=1, dist_init_addr="10.0.0.1:5000", environ={})
    assert (p.rank, p.local_rank, p.spawn) == (2, 0, ((3, 1),))
    assert p.init_method == "tcp://10.0.0.1:5000"
    assert p.for_child(3, 1).spawn == ()


def test_torchrun_env_rendezvous():
    p = resolve_placement(2, environ=TORCHRUN)
    assert (p.rank, p.world_size, p.local_rank, p.from_env, p.spawn) == (1, 2, 1, True, ())
    assert p.init_method == "env://"


@pytest.mark.parametrize("kwargs, env, match", [
    (dict(tp=4), TORCHRUN, "WORLD_SIZE.*--tp 2"),
    (dict(tp=4, nnodes=2), {}, "--dist-init-addr"),
    (dict(tp=3, nnodes=2, dist_init_addr="h:1"), {}, "does not split"),
    (dict(tp=2, nnodes=2, node_rank=2, dist_init_addr="h:1"), {}, "--node-rank 2"),
    (dict(tp=2, dist_init_addr="nohost"), {}, "HOST:PORT"),
])
def test_bad_placements_say_what_to_change(kwargs, env, match):
    with pytest.raises(PlacementError, match=match):
        resolve_placement(**kwargs, environ=env)


def test_checkpoint_tensor_reads_only_slices(tmp_path):
    w = torch.arange(24.0).reshape(4, 6)
    save_file({"w": w}, str(tmp_path / "a.safetensors"))
    with safe_open(str(tmp_path / "a.safetensors"), "pt") as fh:
        t = CheckpointTensor(fh.get_slice("w"))
        assert t.shape == (4, 6)
        assert torch.equal(t.narrow(0, 1, 2), w[1:3])
        assert torch.equal(t.narrow(1, 3, 3), w[:, 3:])
        assert torch.equal(t[2, :3], w[2, :3])
        with pytest.raises(ValueError, match="outside"):
            t.narrow(1, 4, 3)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_engine_options(parser)
    return parser.parse_args(("--model", "m", *argv))


def test_cli_parallel_options():
    kw = engine_kwargs(_args("--tp", "2", "--ep", "2", "--dist-timeout", "9"))
    assert kw["tensor_parallel_size"] == 2 and kw["enable_expert_parallel"]
    assert kw["dist_timeout"] == 9
    assert not engine_kwargs(_args("--tp", "2"))["enable_expert_parallel"]
    with pytest.raises(ExpertParallelSizeError, match="must be 1 or --tp"):
        engine_kwargs(_args("--tp", "4", "--ep", "2"))


def test_router_noop_fields_accepted_only_at_their_defaults():
    from anyware.server.native import GenerateRequest
    from anyware.server.openai_requests import ChatCompletionRequest, CompletionRequest
    from pydantic import ValidationError

    # what sglang-router 0.3.2 adds to the requests it forwards
    CompletionRequest.model_validate({"model": "m", "prompt": "x", "no_stop_trim": False,
                                      "return_hidden_states": False})
    ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "x"}], "no_stop_trim": False,
        "continue_final_message": False, "separate_reasoning": True, "stream_reasoning": True})
    GenerateRequest.model_validate({"text": "x", "model": None, "log_metrics": True,
                                    "return_text_in_logprobs": False, "background": False,
                                    "no_logs": False, "return_bytes": False,
                                    "return_entropy": False})
    with pytest.raises(ValidationError, match="no_stop_trim"):  # asks for something: refused
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "no_stop_trim": True})


def test_speculative_decoding_with_tp_is_accepted():
    from anyware.engine.config import EngineConfig

    # each runs under --tp in tests/parallel/test_tp_parity.py
    for algorithm in ("ngram", "draft", "eagle3"):
        EngineConfig.from_kwargs("m", tensor_parallel_size=2, speculative_algorithm=algorithm,
                                 speculative_draft_model=None if algorithm == "ngram" else "d")


def test_group_names_collective_failures_and_keeps_rank0_errors():
    from anyware.distributed import Placement, RankFailedError, RankGroup

    group = RankGroup(Placement(0, 2, 0, "tcp://127.0.0.1:1"), "gloo", 5.0)
    own = ValueError("a bug on rank 0")
    assert group.explain(own) is own
    lost = group.explain(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:1"))
    assert isinstance(lost, RankFailedError)
    assert "group of 2 ranks is down: a peer rank failed" in str(lost)


def _exit_at_once(placement, parent_pid, ready):  # a spawned rank that dies before the rendezvous
    raise SystemExit(3)


def test_rank_dying_before_the_group_forms_fails_the_start_at_once():
    from anyware.distributed import RankFailedError, RankGroup

    placement = resolve_placement(2, environ={})
    # the rendezvous timeout (60 s) is far away: the failure must come from the dead rank
    with pytest.raises(RankFailedError, match=r"rank 1 \(pid \d+\) exited with code 3 before "
                                              "the group formed"):
        RankGroup.start(placement, "gloo", 60.0, _exit_at_once, ())
