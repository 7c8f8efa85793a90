"""The torchax import shim: only the known names the installed torch lacks become inert
placeholders, only inside the block; torch's lookups are restored, and it logs once."""

import logging

import pytest
import torch
import torch._ops as torch_ops
from anyware_tpu.compat import KNOWN_MISSING, MissingOverload, torchax_import_shim


def _torch_has(name: str) -> bool:
    ns, _, rest = name.partition("::")
    packet, _, overload = rest.partition(".")
    try:
        p = getattr(getattr(torch.ops, ns), packet)
        return not overload or hasattr(p, overload)
    except AttributeError:
        return False


def test_shim_covers_only_missing_names_and_restores_torch(caplog):
    missing = sorted(n for n in KNOWN_MISSING if not _torch_has(n))
    orig = (torch_ops.OpOverloadPacket.__getattr__, torch_ops._OpNamespace.__getattr__)
    with caplog.at_level(logging.INFO, logger="anyware_tpu.compat"), torchax_import_shim() as covered:
        real = torch.ops.aten.prod.dim_int  # a real overload stays the real one
        assert isinstance(real, torch._ops.OpOverload)
        with pytest.raises(AttributeError):  # an unknown missing name still fails
            _ = torch.ops.aten.prod.not_an_overload
        for name in missing:
            ns, _, rest = name.partition("::")
            packet, _, overload = rest.partition(".")
            obj = getattr(getattr(torch.ops, ns), packet)
            if overload:
                obj = getattr(obj, overload)
            assert isinstance(obj, MissingOverload) and obj.name() == name
            with pytest.raises(RuntimeError):
                obj(torch.ones(1))  # inert: never an alias of a real op
    assert sorted(covered) == missing
    assert (torch_ops.OpOverloadPacket.__getattr__, torch_ops._OpNamespace.__getattr__) == orig
    if missing:
        with pytest.raises(AttributeError):
            _ = torch.ops.aten.prod.dim_Dimname
        assert len([r for r in caplog.records if "compatibility shim" in r.message]) == 1
    else:  # a torch that has them all: time to check whether the shim can go
        assert not [r for r in caplog.records if "compatibility shim" in r.message]


def test_torchax_imports_and_lowers_through_the_shim():
    from anyware_tpu import jaxenv

    env = jaxenv.torchax_env()
    with env:
        x = jaxenv.wrap(jaxenv.to_jax(torch.arange(6.0).reshape(2, 3)))
        y = (x * 2).sum(dim=1)
    assert jaxenv.to_torch(y.jax()).tolist() == [6.0, 24.0]
