"""The harness: loads the platform under test, decides applicability at collection time, and
attaches each test's metadata (tier, capability, dtype, state) to its ``user_properties`` so
the reports can be built in the xdist controller.

Registered by :mod:`anyware_conformance.pytest_plugin` only when ``--anyware-platform`` is
given. The four states: *not applicable* (a pytest skip whose reason starts with
``not applicable:``, decided from the declared capabilities), *known failure* (a strict xfail
citing an issue, from the plugin's ``conformance_metadata()``), *skip* (crash or hang only,
with the reason) and pass/fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any

import pytest
from anyware_conformance import TIERS

META_KEY = "anyware"
CHECK_KEY = "anyware.check"
NOT_APPLICABLE = "not applicable: "


def worker_index() -> int:
    """0 without xdist, else the worker number (``gw3`` -> 3)."""
    wid = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(wid[2:]) if wid[2:].isdigit() else 0


class Harness:
    """Per-session state: the platform under test and its declarations."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.name: str = config.getoption("--anyware-platform")
        self.profile: str = config.getoption("--anyware-profile")
        tiers = config.getoption("--anyware-tiers")
        self.tiers = tuple(t.strip() for t in tiers.split(",") if t.strip()) if tiers else TIERS
        unknown = set(self.tiers) - set(TIERS)
        if unknown:
            raise pytest.UsageError(f"unknown tiers {sorted(unknown)}; known: {', '.join(TIERS)}")
        #: the attention backend under test (None: the platform's default one)
        self.attention_backend: str | None = config.getoption("--anyware-attention-backend")
        self._info = None
        self._platform = None
        self._device_ready = False
        self._quantization_checked: dict[str, str] = {}

    # ------------------------------------------------------------ the platform under test
    def plugin_info(self):
        if self._info is None:
            from anyware.runtime import choose, discover

            self._info = choose(discover(), self.name)
        return self._info

    def platform(self, init_device: bool = True):
        """The platform instance (one per process; its device is this xdist worker's)."""
        if self._platform is None:
            from anyware.runtime import load_platform

            self._platform = load_platform(self.name, [self.plugin_info()])
            if self.attention_backend:
                # select it the way the engine does, so capabilities derive from it
                from anyware.plugin import PlatformConfig

                try:
                    self._platform.configure(PlatformConfig(
                        attention_backend=self.attention_backend, execution="eager"))
                except Exception as exc:
                    raise pytest.UsageError(
                        f"--anyware-attention-backend {self.attention_backend}: {exc}") from exc
        if init_device and not self._device_ready:
            count = max(1, self._platform.device_count())
            self._platform.init_device(rank=0, local_rank=worker_index() % count)
            self._device_ready = True
        return self._platform

    def capabilities(self):
        return self.platform(init_device=False).capabilities()

    def metadata(self):
        return self.platform(init_device=False).conformance_metadata()

    def platform_record(self) -> dict[str, Any]:
        """Plugin and device identity for the reports."""
        info = self.plugin_info()
        record: dict[str, Any] = {
            "name": self.name,
            "package": info.package,
            "version": info.version,
            "entry_point": info.entry_point,
            "plugin_api_version": str(getattr(info.cls, "plugin_api_version", "?")),
        }
        try:
            p = self.platform()
            record["device_type"] = p.device_type
            record["device_name"] = p.device_name()
            record["runtime_versions"] = dict(p.runtime_versions())
            record["device_count"] = p.device_count()
            record["dist_backend"] = p.dist_backend
            record["capabilities"] = p.capabilities().to_dict()
        except Exception as exc:  # reported, never fatal to the report
            record["error"] = f"{type(exc).__name__}: {exc}"
        return record

    # ------------------------------------------------------------ collection
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        caps = self.capabilities()
        meta = self.metadata()
        keep, drop = [], []
        for item in items:
            marker = item.get_closest_marker("anyware")
            if marker is None:
                keep.append(item)
                continue
            kw = marker.kwargs
            if kw.get("tier") not in self.tiers or (
                kw.get("profile") == "full" and self.profile != "full"
            ):
                drop.append(item)
                continue
            keep.append(item)
            params = getattr(getattr(item, "callspec", None), "params", {})
            record = {
                "tier": kw["tier"],
                "capability": kw.get("capability", kw["tier"]),
                "dtype": params.get("dtype", "-"),
                "world_size": params.get("world_size", 1),
                "since": kw.get("since", "0.1.0"),
                "provisional": bool(kw.get("provisional", False)),
                "state": "required",
                "reason": "",
            }
            why = self.not_applicable(kw.get("needs", ()), params, caps)
            if why:
                record["state"], record["reason"] = "not_applicable", why
                item.add_marker(pytest.mark.skip(reason=NOT_APPLICABLE + why))
            else:
                for kf in meta.known_failures:
                    if _matches(kf.test, item):
                        record["state"] = "known_failure"
                        record["reason"] = f"{kf.issue}: {kf.reason}"
                        item.add_marker(pytest.mark.xfail(strict=True, reason=record["reason"]))
                        break
            item.user_properties.append((META_KEY, json.dumps(record)))
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def not_applicable(self, needs, params: dict, caps) -> str:
        """Why a test with these needs does not apply to the declared capabilities ('' if it does)."""
        import torch

        def dt(name: str):
            return getattr(torch, name)

        for need in needs:
            if need == "dtype" and dt(params["dtype"]) not in caps.dtypes:
                return f"dtype {params['dtype']} not declared"
            kv = params.get("kv_dtype") or params.get("dtype")
            if need == "kv_dtype" and dt(kv) not in caps.kv_cache_dtypes:
                return f"KV-cache dtype {kv} not declared"
            if need == "page_size" and params["page_size"] not in caps.page_sizes:
                return f"page size {params['page_size']} not declared"
            if need.startswith("attention.") and not getattr(caps.attention, need[10:]):
                return f"attention feature {need[10:]} not declared"
            if need == "moe" and not caps.moe:
                return "MoE not declared"
            if need == "graph_capture" and not caps.graph_capture:
                return "graph capture not declared"
            if need == "compiled_execution" and not caps.compiled_execution:
                return "compiled execution not declared"
            if need.startswith("quantization."):
                why = self._quantization_refused(need[13:], caps)
                if why:
                    return why
            if need.startswith("moe.quantization."):
                method = need[17:]
                why = (self._quantization_refused(method, caps)
                       or self._moe_quantization_refused(method, caps))
                if why:
                    return why
            if need == "collective":
                if params["op"] not in caps.collectives:
                    return f"collective {params['op']} not declared"
                ws = params["world_size"]
                if ws > caps.max_world_size:
                    return f"world size {ws} > declared max {caps.max_world_size}"
                p = self.platform(init_device=False)
                if p.dist_backend != "gloo" and p.device_count() < ws:
                    return f"world size {ws} needs {ws} devices; {p.device_count()} visible"
        return ""

    def _quantization_refused(self, method: str, caps) -> str:
        """Why quantization ``method`` does not apply: not declared, or declared but refused
        by the platform's ``_configure`` on the device it finds (e.g. fp8 below compute
        capability 8.9); '' if it applies. Asked once per method."""
        if method not in caps.quantization:
            return f"quantization {method} not declared"
        if method not in self._quantization_checked:
            from anyware.plugin import CapabilityError, PlatformConfig

            why = ""
            try:  # the platform's own device check, without configuring it
                self.platform(init_device=False).platform._configure(
                    PlatformConfig(quantization=method, execution="eager"))
            except CapabilityError as exc:
                why = f"quantization {method} refused on this device: {exc}"
            self._quantization_checked[method] = why
        return self._quantization_checked[method]

    def _moe_quantization_refused(self, method: str, caps) -> str:
        """Why quantised experts (``MoESpec.quantization = method``) do not apply: the
        platform's MoE backend selection (``PlatformDriver.moe_backend``) finds none for a
        small spec of that method ('' if it does; the engine then keeps such a model's experts
        in its dtype)."""
        from anyware.plugin import CapabilityError, MoESpec

        driver = self.platform(init_device=False)
        dtype = next(iter(sorted(caps.dtypes, key=str)))
        try:
            driver.moe_backend(MoESpec(4, 2, 64, 64, dtype, quantization=method))
        except CapabilityError as exc:
            return f"no MoE backend runs {method} experts ({exc})"
        return ""

    # ------------------------------------------------------------ xdist: identity to the controller
    def pytest_sessionfinish(self, session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None and self._platform is not None:
            workeroutput["anyware_platform"] = json.dumps(self.platform_record())


def _matches(pattern: str, item) -> bool:
    return fnmatch.fnmatch(item.nodeid, pattern) or fnmatch.fnmatch(item.name, pattern)


