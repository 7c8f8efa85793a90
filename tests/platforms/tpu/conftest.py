import importlib.util

import pytest

from tests.engine.conftest import model_dir  # noqa: F401 - the tiny-model factory fixture

# torchax is imported only through the plugin (its compatibility shim): test for presence
if importlib.util.find_spec("jax") is None or importlib.util.find_spec("torchax") is None:
    pytest.skip("jax / torchax not installed (pip install anyware[tpu])", allow_module_level=True)
