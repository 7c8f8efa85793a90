"""Package mapping: `core/` is `anyware`, `platforms/<name>/` is `anyware_<name>`."""

from pathlib import Path

from setuptools import find_packages, setup

ROOTS = {
    "anyware": "core",
    "anyware_cpu": "platforms/cpu",
    "anyware_cuda": "platforms/cuda",
    "anyware_tpu": "platforms/tpu",
    "anyware_conformance": "conformance",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for top, root in ROOTS.items():
        if not Path(root, "__init__.py").exists():
            continue
        package_dir[top] = root
        packages.append(top)
        packages += [f"{top}.{sub}" for sub in find_packages(where=root)]
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"anyware": ["assets/*/*", "assets/*.md"], "anyware_conformance": ["*.md"]},
    include_package_data=True,
)
