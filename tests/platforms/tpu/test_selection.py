"""On a machine without a TPU the tpu platform is available by name only: `anyware
platforms` says so and still auto-selects another platform; `--platform tpu` selects it."""

import json
import os
import subprocess
import sys

from anyware.runtime import choose, discover
from anyware_tpu.probe import probe, tpu_visible


def test_probe_is_by_name_only_without_a_tpu():
    if tpu_visible():  # pragma: no cover - on a TPU VM
        assert probe().available and not probe().explicit_only
        return
    result = probe()
    assert result.available and result.explicit_only and "JAX CPU backend" in result.reason
    infos = discover()
    assert choose(infos).name != "tpu"
    assert choose(infos, "tpu").name == "tpu"


def test_anyware_platforms_reports_it():
    out = subprocess.run([sys.executable, "-m", "anyware.cli.main", "platforms", "--json"],
                         capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "ANYWARE_PLATFORM"})
    doc = json.loads(out.stdout)
    tpu = next(p for p in doc["platforms"] if p["name"] == "tpu")
    if not tpu_visible():
        assert tpu["available"] and tpu["explicit_only"] and doc["selected"] != "tpu"
