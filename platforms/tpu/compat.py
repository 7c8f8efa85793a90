"""A compatibility shim for importing torchax 0.0.13 on torch >= 2.13.

torchax 0.0.13's op tables name ATen overloads that torch 2.13 removed (the named-tensor
``Dimname`` overloads: ``aten.prod.dim_Dimname``, ``aten.all.dimname``, ...; torch 2.14 also
drops ``aten.cholesky`` and ``aten.qr``). Looking one up raises ``AttributeError`` while
torchax imports, so the import fails. While :func:`torchax_import_shim` is active, a lookup
of exactly one of :data:`KNOWN_MISSING` that the installed torch lacks returns an inert
:class:`MissingOverload` key (a dictionary key that no tensor ever dispatches to) instead of
raising; every other lookup is torch's own. The shim is never an alias to a real overload:
torchax would then register its named-tensor implementation over the real op.

Scope: active only while torchax is imported and builds its first environment (the op
tables are filled then); torch's lookup is restored afterwards, even on error. It logs once
which names it covered.

Remove it when a torchax release with the upstream fix (torchax main handles torch 2.13)
is the minimum in ``pyproject.toml``'s ``tpu`` extra: ``KNOWN_MISSING`` then covers nothing
and ``test_compat.py`` says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch._ops as torch_ops

log = logging.getLogger(__name__)

# "<namespace>::<packet>.<overload>" (packets: "<namespace>::<name>" with no overload)
KNOWN_MISSING: frozenset[str] = frozenset({
    "aten::all.dimname", "aten::all.dimname_out", "aten::index_add.dimname",
    "aten::index_copy.dimname", "aten::index_copy_.dimname",
    "aten::index_fill.Dimname_Scalar", "aten::index_fill.Dimname_Tensor",
    "aten::index_fill_.Dimname_Scalar", "aten::index_fill_.Dimname_Tensor",
    "aten::norm.names_ScalarOpt_dim", "aten::norm.names_ScalarOpt_dim_dtype",
    "aten::norm.names_dtype_out", "aten::norm.names_out", "aten::prod.dim_Dimname",
    "aten::std.correction_names", "aten::std.correction_names_out", "aten::std.names_dim",
    "aten::std.names_out", "aten::std_mean.correction_names", "aten::std_mean.names_dim",
    "aten::unbind.Dimname",
    # torch 2.14
    "aten::cholesky", "aten::qr",
})


class MissingOverload:
    """An inert stand-in for an overload the installed torch lacks: hashable, comparable only
    to itself, and never called (no tensor dispatches to a name torch does not have)."""

    __slots__ = ("qualified_name",)

    def __init__(self, qualified_name: str) -> None:
        self.qualified_name = qualified_name

    def name(self) -> str:
        return self.qualified_name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.qualified_name} does not exist in torch {torch.__version__}")

    def __repr__(self) -> str:
        return f"<missing overload {self.qualified_name}>"


class _Shim:
    """Holds the patched lookups and what they covered (no module-level state)."""

    def __init__(self) -> None:
        self.covered: dict[str, MissingOverload] = {}
        self.orig_overload = torch_ops.OpOverloadPacket.__getattr__
        self.orig_namespace = torch_ops._OpNamespace.__getattr__

    def overload(self, packet, key: str):
        try:
            return self.orig_overload(packet, key)
        except AttributeError:
            name = f"{packet._qualified_op_name}.{key}"
            if name not in KNOWN_MISSING:
                raise
            return self.covered.setdefault(name, MissingOverload(name))

    def namespace(self, ns, key: str):
        try:
            return self.orig_namespace(ns, key)
        except AttributeError:
            name = f"{ns.name}::{key}"
            if name not in KNOWN_MISSING:
                raise
            return self.covered.setdefault(name, MissingOverload(name))


@contextlib.contextmanager
def torchax_import_shim() -> Iterator[dict[str, MissingOverload]]:
    """Within the block, the :data:`KNOWN_MISSING` names the installed torch lacks resolve to
    :class:`MissingOverload` keys; yields the names covered so far (filled as they are looked
    up). torch's lookups are restored on exit."""
    shim = _Shim()
    owner = shim  # bound methods keep the original functions reachable

    def packet_getattr(packet, key):
        return owner.overload(packet, key)

    def namespace_getattr(ns, key):
        return owner.namespace(ns, key)

    torch_ops.OpOverloadPacket.__getattr__ = packet_getattr
    torch_ops._OpNamespace.__getattr__ = namespace_getattr
    try:
        yield shim.covered
    finally:
        torch_ops.OpOverloadPacket.__getattr__ = shim.orig_overload
        torch_ops._OpNamespace.__getattr__ = shim.orig_namespace
        if shim.covered:
            log.info("torchax compatibility shim: torch %s lacks %d overloads torchax names; "
                     "they were inert placeholders during torchax's import: %s",
                     torch.__version__, len(shim.covered), ", ".join(sorted(shim.covered)))
