"""Package mapping: `core/` is `anyware`, `platforms/<name>/` is `anyware_<name>`,
`conformance/` is `anyware_conformance`.

The mapping is spelled as symbolic links in `src/` (`src/anyware -> ../core`, ...), so that
`src/` is an ordinary "src layout": an editable install (`pip install -e .`) then puts `src/`
on `sys.path` with a plain `.pth` line, and `import anyware` finds the real package from any
directory. (A `package_dir` mapping with renamed directories makes setuptools install an import
hook instead, which loses to the namespace package that a clone directory named `anyware`
forms when Python starts from its parent directory.) A new platform plugin needs its link:
`ln -s ../platforms/<name> src/anyware_<name>` (tests/unit/test_packaging.py checks this).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(where="src"),
    package_dir={"": "src"},
    package_data={"anyware": ["assets/*/*", "assets/*.md", "kernels/triton/moe_configs/*.json"],
                  "anyware_conformance": ["*.md"]},
    include_package_data=True,
)
