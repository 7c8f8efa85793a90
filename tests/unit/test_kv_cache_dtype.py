"""``--kv-cache-dtype``: the names it takes (``fp8`` and its aliases map to e4m3), the model
dtype refusing fp8, and the start-up check refusing an fp8 KV cache on a backend that does not
declare it, with an error that names fp8 and what to do."""

from __future__ import annotations

import pytest
import torch
from anyware import InvalidRequestError
from anyware.cli.options import add_engine_options, add_model_options, engine_kwargs
from anyware.engine.config import parse_dtype, parse_kv_dtype
from anyware.kernels.reference import ReferenceAttentionBackend, store_kv
from anyware.plugin import CapabilityError, PlatformConfig
from anyware.runtime.validation import resolve_config

FP8 = torch.float8_e4m3fn


@pytest.mark.parametrize("name", ["fp8", "fp8_e4m3", "float8_e4m3fn", FP8])
def test_fp8_names(name):
    assert parse_kv_dtype(name) is FP8


def test_kv_dtype_names():
    assert parse_kv_dtype("auto") is None and parse_kv_dtype(None) is None
    assert parse_kv_dtype("bf16") is torch.bfloat16
    with pytest.raises(InvalidRequestError, match="fp8"):
        parse_kv_dtype("int4")
    with pytest.raises(InvalidRequestError):  # fp8 is a KV dtype, not a model dtype
        parse_dtype("fp8")


def test_cli_option():
    import argparse

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_engine_options(parser)
    assert engine_kwargs(parser.parse_args(["--kv-cache-dtype", "fp8"]))["kv_cache_dtype"] == "fp8"
    assert engine_kwargs(parser.parse_args([]))["kv_cache_dtype"] is None


class _NoFp8(ReferenceAttentionBackend):
    name = "no-fp8"
    kv_dtypes = (torch.float32, torch.bfloat16)
    priority = 5


def test_reference_store_saturates():
    kc = torch.zeros(4, 1, 3, dtype=FP8)
    vc = torch.zeros_like(kc)
    x = torch.tensor([[[1000.0, -1e5, 0.3]]])
    store_kv(kc, vc, x, -x, torch.tensor([2]))
    assert kc[2, 0].float().tolist() == [448.0, -448.0, 0.3125]
    assert vc[2, 0].float().tolist() == [-448.0, 448.0, -0.3125]


def test_default_pick_skips_a_backend_without_fp8(cpu_platform):
    declared = cpu_platform.declared_capabilities()
    config, backend = resolve_config(cpu_platform.platform, declared, [_NoFp8, ReferenceAttentionBackend],
                                     PlatformConfig(kv_cache_dtype=FP8))
    assert backend is ReferenceAttentionBackend and config.kv_cache_dtype is FP8
    config, backend = resolve_config(cpu_platform.platform, declared, [_NoFp8, ReferenceAttentionBackend],
                                     PlatformConfig())
    assert backend is _NoFp8 and config.kv_cache_dtype == config.dtype


def test_named_backend_without_fp8_is_refused(cpu_platform):
    declared = cpu_platform.declared_capabilities()
    with pytest.raises(CapabilityError) as err:
        resolve_config(cpu_platform.platform, declared, [_NoFp8, ReferenceAttentionBackend],
                       PlatformConfig(kv_cache_dtype=FP8, attention_backend="no-fp8"))
    msg = str(err.value)
    assert "fp8" in msg and "no-fp8" in msg and "--attention-backend torch-reference" in msg
    with pytest.raises(CapabilityError) as err:
        resolve_config(cpu_platform.platform, declared, [_NoFp8], PlatformConfig(kv_cache_dtype=FP8))
    assert "fp8" in str(err.value) and "--kv-cache-dtype auto" in str(err.value)
