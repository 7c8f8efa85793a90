"""`Engine()` and `Engine("anyware-demo")` load the built-in demo model, so the README's Python
snippet runs as written."""

from __future__ import annotations

import pytest
from anyware import Engine, SamplingParams
from anyware.engine.config import demo_model_path


@pytest.mark.parametrize("args", [(), ("anyware-demo",)])
def test_default_and_named_demo_model(args):
    with Engine(*args, show_progress=False) as engine:
        assert engine.model_name == "anyware-demo"
        assert engine.config.model == str(demo_model_path())
        assert engine.tokenizer is not None
        out = engine.generate(["def f(x):"], SamplingParams(max_new_tokens=4, temperature=0))
        assert len(out[0].outputs[0].token_ids) == 4
        assert isinstance(out[0].outputs[0].text, str)


def test_readme_python_snippet_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    snippet = next(b for b in blocks if "from anyware import Engine" in b)
    out = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "the snippet printed nothing"
