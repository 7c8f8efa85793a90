"""House rules enforced in CI (docs/architecture.md, "Rules of the house" 1, 2 and 12).

* The core (``core/``, the ``anyware`` package) never names a vendor; portable Triton kernels
  under ``core/kernels/triton/`` are the one exception. The core asks the platform object or
  checks a declared capability instead.
* The import-linter contracts in ``pyproject.toml`` hold (``lint-imports``).

Both checks are also run against planted violations, so that they are known to be able to fail.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
EXEMPT = [CORE / "kernels" / "triton"]

_Q = "[\"']"  # a quote
VENDOR_PATTERNS: dict[str, str] = {
    "torch.cuda": r"\btorch\.cuda\b",
    "torch.xpu": r"\btorch\.xpu\b",
    "torch.npu": r"\btorch\.npu\b",
    "torch.mps": r"\btorch\.mps\b",
    "torch.version.cuda/hip": r"\btorch\.version\.(cuda|hip)\b",
    "torch.backends.cudnn/mps": r"\btorch\.backends\.(cudnn|cuda|mps)\b",
    "torch_npu": r"\btorch_npu\b",
    "torch_xla": r"\btorch_xla\b",
    "jax/torchax": r"\b(jax|jaxlib|torchax|libtpu)\b",
    "intel_extension_for_pytorch": r"\bintel_extension_for_pytorch\b",
    "flashinfer": r"\bflashinfer\b",
    "aiter": r"\baiter\b",
    "habana": r"\bhabana_frameworks\b",
    "collective backend name": _Q + r"(nccl|rccl|hccl|xccl|ccl)" + _Q,
    "device name string": _Q + r"(cuda|hip|rocm|xpu|npu|mps|tpu|xla|hpu)(:\d+)?" + _Q,
    "is_cuda()/is_hip()/is_rocm()/...": r"\bis_(cuda|hip|rocm|xpu|npu|tpu|mps)(_available)?\s*\(",
    "tensor.is_cuda": r"\.is_(cuda|xpu|mps)\b",
    "platform name comparison": r"\b(platform|plat)\.name\s*[!=]=\s*" + _Q,
}
_COMPILED = {label: re.compile(p) for label, p in VENDOR_PATTERNS.items()}


def vendor_names(text: str) -> list[tuple[int, str, str]]:
    """(line number, rule label, line) for every vendor name in ``text``."""
    hits = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for label, pattern in _COMPILED.items():
            if pattern.search(line):
                hits.append((lineno, label, line.strip()))
    return hits


def core_files() -> list[Path]:
    return sorted(
        p for p in CORE.rglob("*.py")
        if not any(p.is_relative_to(e) for e in EXEMPT) and "__pycache__" not in p.parts
    )


def test_core_names_no_vendor():
    files = core_files()
    assert files, f"no Python files found under {CORE}"
    problems = [
        f"{path.relative_to(ROOT)}:{lineno}: {label}: {line}"
        for path in files
        for lineno, label, line in vendor_names(path.read_text(encoding="utf-8"))
    ]
    assert not problems, (
        "The core must not name a vendor (rule 1): ask the platform object or check a declared "
        "capability instead; vendor code belongs in platforms/<name>/ (portable Triton kernels "
        "in core/kernels/triton/ excepted).\n" + "\n".join(problems)
    )


PLANTED = {
    "torch.cuda": "if torch.cuda.is_available():",
    "torch.xpu": "torch.xpu.synchronize()",
    "torch_npu": "import torch_npu",
    "collective backend name": 'dist.init_process_group("nccl")',
    "device name string": "x = torch.empty(3, device='cuda:0')",
    "is_cuda()/is_hip()/is_rocm()/...": "if is_hip():",
    "tensor.is_cuda": "assert x.is_cuda",
    "platform name comparison": 'if platform.name == "acme":',
    "flashinfer": "from flashinfer import BatchDecodeWithPagedKVCacheWrapper",
}


@pytest.mark.parametrize("label", sorted(PLANTED))
def test_vendor_check_catches_planted_violation(label):
    hits = vendor_names(f"import torch\n\n{PLANTED[label]}\n")
    assert [(h[0], h[1]) for h in hits] == [(3, label)]


def test_vendor_check_allows_neutral_code():
    neutral = textwrap.dedent(
        """
        device = platform.device
        if caps.graph_capture and platform.name == name:
            backend = platform.dist_backend  # e.g. what the platform declares
        # Graph capture (CUDA/HIP graphs) is a platform strategy.
        """
    )
    assert vendor_names(neutral) == []


# import-linter as this interpreter imports it (a lint-imports script found on PATH may belong
# to another environment, which resolves the packages of another checkout)
LINT_IMPORTS = ([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                 "lint_imports_command()"]
                if importlib.util.find_spec("importlinter") is not None else None)
needs_lint_imports = pytest.mark.skipif(
    LINT_IMPORTS is None, reason="import-linter is not installed (pip install -e '.[dev]')"
)


def _ini(config: dict) -> str:
    """The repository's ``[tool.importlinter]`` table as an INI config for ``--config``."""

    def value(v) -> str:
        return "".join(f"\n    {x}" for x in v) if isinstance(v, list) else str(v)

    lines = ["[importlinter]"]
    lines += [f"{k} = {value(v)}" for k, v in config.items() if k != "contracts"]
    for i, contract in enumerate(config["contracts"]):
        lines.append(f"\n[importlinter:contract:{i}]")
        lines += [f"{k} = {value(v)}" for k, v in contract.items()]
    return "\n".join(lines) + "\n"


def _lint_imports(cwd: Path, config: Path | None = None, pythonpath: Path | None = None):
    import os

    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    cmd = [*LINT_IMPORTS, "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@needs_lint_imports
def test_import_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_lint_imports
def test_import_contracts_catch_planted_violation(tmp_path):
    """The repository's own contracts, run over a fake tree where a platform imports the engine,
    a platform imports the core's platform driver (``anyware.runtime``), the core imports a
    platform, and the scheduler and the runtime import layers above them (imports back up the
    layers): lint-imports must report all five."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    out = _plant_violations_and_lint(tmp_path, config)
    assert "anyware_cpu.platform -> anyware.engine" in out, out
    assert "anyware.plugin -> anyware_cpu" in out, out
    assert "anyware.scheduler.policy -> anyware.engine" in out, out
    assert "anyware_cpu.plugin -> anyware.runtime" in out, out
    assert "anyware.runtime.driver -> anyware.memory" in out, out


def _plant_violations_and_lint(tmp_path: Path, config: dict) -> str:
    site = tmp_path / "site"
    named = {m for c in config["contracts"] for key in ("source_modules", "forbidden_modules")
             for m in c.get(key, ())}
    named |= {m.strip() for c in config["contracts"] for layer in c.get("layers", ())
              for m in layer.split("|")}
    for module in set(config["root_packages"]) | named | {"anyware.plugin", "anyware.engine"}:
        parts = module.split(".")
        if parts[0] not in config["root_packages"] or "*" in module:
            continue
        for i in range(1, len(parts) + 1):
            pkg = site.joinpath(*parts[:i])
            pkg.mkdir(parents=True, exist_ok=True)
            (pkg / "__init__.py").touch()
    (site / "anyware" / "plugin" / "__init__.py").write_text("import anyware_cpu\n")
    (site / "anyware_cpu" / "platform.py").write_text("import anyware.engine\n")
    (site / "anyware" / "scheduler" / "policy.py").write_text("import anyware.engine\n")
    (site / "anyware_cpu" / "plugin.py").write_text("import anyware.runtime\n")
    (site / "anyware" / "runtime" / "driver.py").write_text("import anyware.memory\n")
    cfg = tmp_path / ".importlinter"
    cfg.write_text(_ini(config))
    proc = _lint_imports(tmp_path, cfg, site)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    return out
