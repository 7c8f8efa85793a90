"""The vendor-CI templates (docs/vendor-ci/) and the generated plugin's workflow: they parse,
they call ``anyware conformance`` with flags the CLI really has (parsed by the real argument
parser), they install torch before anyware, check discovery, publish the JUnit XML and the
Markdown summary, and rely on the command's exit status for the 100% rule."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from anyware.cli.main import build_parser
from anyware.cli.plugin_new import render, validate

from tests.kit.install import REPO

VENDOR_CI = REPO / "docs" / "vendor-ci"


def _commands(text: str) -> list[str]:
    """Every shell line of a CI file that runs ``anyware conformance``."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("- ").removeprefix("run: ").strip()
        if line.startswith("anyware conformance"):
            lines.append(line)
    return lines


def _parse(command: str):
    argv = shlex.split(command.replace('"$PLATFORM"', "acme").replace("$PLATFORM", "acme"))
    assert argv[0] == "anyware"
    return build_parser().parse_args(argv[1:])


def _files() -> dict[str, str]:
    generated = render(validate("acme", "cpu", "cpu"))[".github/workflows/conformance.yml"]
    other = render(validate("acme", "acmedev", "cpu"))[".github/workflows/conformance.yml"]
    return {"github-actions.yml": (VENDOR_CI / "github-actions.yml").read_text(),
            "gitlab-ci.yml": (VENDOR_CI / "gitlab-ci.yml").read_text(),
            "generated (cpu)": generated, "generated (device)": other}


@pytest.mark.parametrize("name", list(_files()))
def test_template_calls_the_cli_with_real_flags(name):
    text = _files()[name]
    yaml.safe_load(text)  # valid YAML
    commands = _commands(text)
    assert len(commands) == 1, commands
    args = _parse(commands[0])
    assert (args.platform, args.report, args.workers) == ("acme", "out/", "auto")
    assert args.func.__module__ == "anyware.cli.conformance"
    assert "anyware platforms" in text  # discovery is checked before the suite runs


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_vendor_template_installs_torch_first_and_publishes_reports(name):
    text = _files()[name]
    torch_at = text.index("pip install --progress-bar off torch")
    assert torch_at < text.index('pip install --progress-bar off "$ANYWARE"')
    assert "pytest-xdist" in text  # -n auto needs it
    for report in ("out/junit.xml", "out/conformance.md"):
        assert report in text, report
    doc = yaml.safe_load(text)
    if name == "github-actions.yml":
        job = doc["jobs"]["conformance"]
        assert "self-hosted" in job["runs-on"]
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
        assert upload["if"] == "always()"
    else:
        job = doc["anyware-conformance"]
        assert job["artifacts"]["when"] == "always"
        assert job["artifacts"]["reports"]["junit"] == "out/junit.xml"
        assert job["tags"]


def test_cli_exit_status_is_the_100_percent_rule(tmp_path, monkeypatch):
    """``anyware conformance`` exits 0 only when the report is conformant, 1 below 100%, 2
    when the suite wrote no report: what the templates rely on to fail the job."""
    import json

    import pytest as pytest_module
    from anyware.cli import conformance

    def fake_main(conformant: bool | None):
        def run(argv):
            out = Path(argv[argv.index("--anyware-report") + 1])
            if conformant is not None:
                summary = {"conformant": conformant, "line": "anyware-conformance: acme"}
                (out / "conformance.json").write_text(json.dumps({"summary": summary}))
            return 0 if conformant else 1 if conformant is not None else 4
        return run

    args = build_parser().parse_args(["conformance", "--platform", "cpu", "--report",
                                      str(tmp_path / "r")])
    for conformant, status in ((True, 0), (False, 1), (None, 2)):
        (tmp_path / "r").mkdir(exist_ok=True)
        (tmp_path / "r" / "conformance.json").unlink(missing_ok=True)
        monkeypatch.setattr(pytest_module, "main", fake_main(conformant))
        assert conformance.run(args) == status, conformant
