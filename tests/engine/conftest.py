import os

import pytest

from tests.engine.tiny_models import build_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A factory: ``model_dir(arch)`` builds (once per session) a tiny model directory."""
    cache = {}

    def make(arch: str = "llama"):
        if arch not in cache:
            cache[arch] = build_model(arch, tmp_path_factory.mktemp(arch))
        return cache[arch]

    return make


def hf_references(model_dir, lengths, new_tokens):
    """A factory: ``get(arch)`` -> ``(prompts, *hf_greedy(...))`` for random prompts of
    ``lengths`` and ``new_tokens`` greedy tokens from transformers, computed once per arch."""
    from tests.engine.tiny_models import hf_greedy, random_prompts

    cache = {}

    def get(arch: str):
        if arch not in cache:
            prompts = random_prompts(lengths)
            cache[arch] = (prompts, *hf_greedy(model_dir(arch), prompts, new_tokens))
        return cache[arch]

    return get


# ANYWARE_TEST_PLATFORM=cuda runs the same engine tests on another platform (default: cpu)
PLATFORM = os.environ.get("ANYWARE_TEST_PLATFORM", "cpu")
# ANYWARE_TEST_OVERLAP=1 / 0 forces overlap scheduling on / off (default: the platform's
# choice, off on the CPU); CI runs this directory both ways
_OVERLAP = {"1": True, "0": False}.get(os.environ.get("ANYWARE_TEST_OVERLAP", ""))
# fp32: the transformers reference runs in fp32 (a GPU platform would default to bf16)
ENGINE_DEFAULTS = dict(platform=PLATFORM, dtype="float32", debug_invariants=True,
                       show_progress=False, overlap_schedule=_OVERLAP)
