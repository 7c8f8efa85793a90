"""`Checker`: how a conformance test compares, proves its kernel ran, and records statistics.

Every comparison records its error statistics (max-abs, mean-abs, relative = ||a-e|| / ||e||),
the tolerance used and any waiver in the test's ``user_properties`` — for passing tests too —
so the reports (built in the xdist controller) can show them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from anyware_conformance.harness import CHECK_KEY
from anyware_conformance.tolerances import Tolerance, tolerance


def dtype_name(dtype: torch.dtype | str) -> str:
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def error_stats(actual: torch.Tensor, expected: torch.Tensor) -> dict[str, float]:
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    diff = (a - e).abs()
    if diff.numel() == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0, "rel": 0.0}
    diff = torch.where(torch.isnan(a) & torch.isnan(e), torch.zeros_like(diff), diff)
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "rel": float(diff.norm() / e.norm().clamp_min(1e-30)),
    }


class Checker:
    """Bound to one test item; see the module docstring."""

    def __init__(self, item: pytest.Item, platform: Any) -> None:
        self.item = item
        self.platform = platform
        self.waivers = platform.conformance_metadata().waivers

    # ------------------------------------------------------------ numerics
    def tolerance_for(self, op: str, dtype: str, reduction: int) -> Tolerance:
        tol = tolerance(op, dtype, reduction)
        for w in self.waivers:
            test_ok = fnmatch.fnmatch(self.item.nodeid, w.test) or fnmatch.fnmatch(self.item.name, w.test)
            if test_ok and w.dtype in ("*", dtype):
                return Tolerance(max(tol.atol, w.atol), max(tol.rtol, w.rtol), f"waiver: {w.reason}")
        return tol

    def close(
        self,
        what: str,
        actual: torch.Tensor,
        expected: torch.Tensor,
        *,
        op: str,
        dtype: torch.dtype | str,
        reduction: int = 1,
    ) -> dict[str, float]:
        """Assert ``actual`` matches ``expected`` within the table's tolerance; record stats."""
        dt = dtype_name(dtype)
        assert tuple(actual.shape) == tuple(expected.shape), (
            f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
        )
        tol = self.tolerance_for(op, dt, reduction)
        stats = error_stats(actual, expected)
        a = actual.detach().to("cpu", torch.float64)
        e = expected.detach().to("cpu", torch.float64)
        bad = ~((a - e).abs() <= tol.atol + tol.rtol * e.abs())
        bad &= ~(torch.isnan(a) & torch.isnan(e))
        self.record(what=what, op=op, dtype=dt, reduction=reduction, **stats,
                    atol=tol.atol, rtol=tol.rtol, tolerance_source=tol.source,
                    mismatched=int(bad.sum()))
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            pytest.fail(
                f"{what}: {int(bad.sum())}/{bad.numel()} elements outside atol={tol.atol} "
                f"rtol={tol.rtol} ({tol.source}); first at {idx}: actual {float(a[idx]):.6g} "
                f"expected {float(e[idx]):.6g}; max_abs={stats['max_abs']:.3g} "
                f"mean_abs={stats['mean_abs']:.3g} rel={stats['rel']:.3g}",
                pytrace=False,
            )
        return stats

    def equal(self, what: str, actual: torch.Tensor, expected: torch.Tensor, *, op: str,
              dtype: torch.dtype | str = "-") -> None:
        """Exact equality (data movement, token ids); records the mismatch count."""
        self._exact(what, actual, expected, op, dtype_name(dtype))

    def _exact(self, what, actual, expected, op, dt) -> None:
        a, e = actual.detach().cpu(), expected.detach().cpu()
        assert tuple(a.shape) == tuple(e.shape), f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
        bad = a != e
        self.record(what=what, op=op, dtype=dt, exact=True, mismatched=int(bad.sum()))
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            pytest.fail(f"{what}: {int(bad.sum())}/{bad.numel()} differ; first at {idx}: "
                        f"{a[idx].item()} != expected {e[idx].item()}", pytrace=False)

    def greedy_tokens(self, what: str, tokens: list[int], ref_tokens: list[int],
                      ref_top: list[list[tuple[int, float]]], *, dtype: torch.dtype | str) -> int:
        """Greedy tokens equal the reference's up to the first difference, which is allowed
        only at a near tie: the platform's token is among the reference's top choices and
        within the dtype's logprob tolerance of the reference's own choice there. Returns how
        many leading tokens are comparable (the rest continue from a different prefix)."""
        dt = dtype_name(dtype)
        assert len(tokens) == len(ref_tokens), f"{what}: {len(tokens)} tokens != {len(ref_tokens)}"
        j = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), None)
        if j is None:
            self.record(what=what, op="engine.greedy", dtype=dt, exact=True, mismatched=0)
            return len(tokens)
        top = dict(ref_top[j]) if j < len(ref_top) else {}
        best = top.get(ref_tokens[j])
        tol = self.tolerance_for("logprob", dt, 1)
        gap = None if best is None or tokens[j] not in top else best - top[tokens[j]]
        if gap is not None and gap <= tol.atol:
            self.record(what=what, op="engine.greedy", dtype=dt, exact=True, mismatched=0,
                        near_tie_at=j, logprob_gap=gap, atol=tol.atol)
            return j
        self.record(what=what, op="engine.greedy", dtype=dt, exact=True,
                    mismatched=sum(a != b for a, b in zip(tokens, ref_tokens)))
        why = ("not among the reference's top choices" if gap is None
               else f"reference logprob gap {gap:.4g} > {tol.atol}")
        pytest.fail(f"{what}: first difference at {j}: {tokens[j]} != expected {ref_tokens[j]} "
                    f"({why})", pytrace=False)

    def record(self, **fields: Any) -> None:
        self.item.user_properties.append((CHECK_KEY, json.dumps(fields)))

    # ------------------------------------------------------------ no pass by fallback
    def on_device(self, what: str, *tensors: torch.Tensor) -> None:
        want = self.platform.device
        for t in tensors:
            assert t.device.type == want.type, (
                f"{what}: output on {t.device}, not on the platform's device {want} "
                "(a fallback to another device does not count)"
            )

    @contextlib.contextmanager
    def runs(self, obj: Any, key: str | None = None) -> Iterator[None]:
        """Assert the platform's own kernel ran inside the block: ``obj.calls`` (an int, or
        a Counter indexed by ``key``) must grow."""
        before = obj.calls[key] if key is not None else obj.calls
        yield
        after = obj.calls[key] if key is not None else obj.calls
        name = f"{type(obj).__name__}.calls" + (f"[{key!r}]" if key else "")
        assert after > before, (
            f"{name} did not increase: the platform's own kernel did not run "
            "(a silent fallback to another implementation is a failure)"
        )
