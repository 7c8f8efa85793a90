"""``anyware plugin new NAME``: write a complete, installable platform-plugin distribution
``anyware-NAME`` (pyproject with the ``anyware.platforms`` entry point, a ``Platform`` subclass
with every hook, a probe, a conformance waiver file, a README and a CI workflow).

The files are rendered from the templates in ``anyware/assets/plugin_template`` (package data)
with jinja2, using delimiters that Python, TOML and GitHub Actions never write (``<<<x>>>``,
``<% if %>``), so the templates read as the files they produce.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BASES = ("cpu", "torchdev")
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "assets" / "plugin_template"

# template -> path in the generated distribution ({pkg} is the import package)
FILES = {
    "pyproject.toml.j2": "pyproject.toml",
    "README.md.j2": "README.md",
    "gitignore.j2": ".gitignore",
    "conformance.yml.j2": ".github/workflows/conformance.yml",
    "init.py.j2": "{pkg}/__init__.py",
    "plugin.py.j2": "{pkg}/plugin.py",
    "platform_{base}.py.j2": "{pkg}/platform.py",
    "waivers.py.j2": "{pkg}/waivers.py",
    "conformance-waivers.toml.j2": "{pkg}/conformance-waivers.toml",
}


class PluginNameError(ValueError):
    """A plugin name or option that cannot make a valid distribution (the message says why and
    what to use instead)."""


@dataclass(frozen=True)
class PluginSpec:
    """What a generated plugin is: its platform name and where its device comes from."""

    name: str
    device_type: str
    base: str = "cpu"

    @property
    def dist(self) -> str:
        return f"anyware-{self.name.replace('_', '-')}"

    @property
    def pkg(self) -> str:
        return f"anyware_{self.name}"

    @property
    def cls(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Platform"


def validate(name: str, device_type: str, base: str) -> PluginSpec:
    """A :class:`PluginSpec`, or :class:`PluginNameError` saying what is wrong and what to use."""
    if not NAME_RE.match(name) or keyword.iskeyword(name):
        suggestion = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        if suggestion and not suggestion[0].isalpha():
            suggestion = f"p{suggestion}"
        hint = f" (e.g. {suggestion!r})" if suggestion and NAME_RE.match(suggestion) else ""
        raise PluginNameError(
            f"invalid platform name {name!r}: use 1-32 lowercase letters, digits and '_', "
            f"starting with a letter and not a Python keyword{hint}; it becomes the --platform "
            "name, the entry-point name and the package anyware_<name>")
    if not re.match(r"^[a-z][a-z0-9_]*$", device_type):
        raise PluginNameError(f"invalid --device-type {device_type!r}: a torch device type such "
                              "as 'cpu' or 'privateuseone' (lowercase letters, digits, '_')")
    if base not in BASES:
        raise PluginNameError(f"invalid --from {base!r}: one of {', '.join(BASES)}")
    if base == "torchdev" and device_type == "cpu":
        raise PluginNameError(
            "--from torchdev drives the torch device module torch.<device-type> (a module "
            "with device_count, set_device, synchronize, graphs); for the host CPU use "
            "--from cpu, or name your device type with --device-type")
    return PluginSpec(name, device_type, base)


def installed_platform(name: str) -> str | None:
    """The entry point that already provides platform ``name`` (``"module (dist)"``), or None.
    Reads entry-point metadata only; imports nothing."""
    from importlib import metadata

    from anyware.plugin import PLATFORM_GROUP

    for ep in metadata.entry_points(group=PLATFORM_GROUP, name=name):
        dist = getattr(ep, "dist", None)
        return f"{ep.value} ({dist.metadata['Name'] if dist else '?'})"
    return None


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        variable_start_string="<<<", variable_end_string=">>>",
        block_start_string="<%", block_end_string="%>",
        comment_start_string="<#", comment_end_string="#>",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False,
    )


def render(spec: PluginSpec) -> dict[str, str]:
    """Relative path -> text of every file of the distribution."""
    from anyware.plugin import PLUGIN_API_VERSION
    from anyware.version import __version__

    major, minor = PLUGIN_API_VERSION.split(".")[:2]
    is_cpu = spec.device_type == "cpu"
    context = {
        "name": spec.name, "dist": spec.dist, "pkg": spec.pkg, "cls": spec.cls,
        "device_type": spec.device_type, "base": spec.base, "is_cpu": is_cpu,
        "api": f"{major}.{minor}", "anyware_version": __version__,
        "env_prefix": spec.name.upper(),
        "priority": 0 if is_cpu else 10,
        "description": (f"{spec.name} on the host CPU (torch reference ops)" if is_cpu
                        else f"{spec.name} ({spec.device_type} devices)"),
    }
    env = _environment()
    out = {}
    for template, target in FILES.items():
        path = target.format(pkg=spec.pkg)
        out[path] = env.get_template(template.format(base=spec.base)).render(context)
    return out


def generate(spec: PluginSpec, directory: Path, *, force: bool = False) -> list[Path]:
    """Write the distribution into ``directory`` (created; it must be empty unless ``force``)
    and return the files written."""
    if directory.exists() and any(directory.iterdir()) and not force:
        raise PluginNameError(f"{directory} exists and is not empty; choose another --dir "
                              "(or pass --force to overwrite the generated files)")
    written = []
    for rel, text in render(spec).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plugin", help="platform-plugin authoring tools",
        description="Tools for writing a third-party platform plugin.")
    sub = parser.add_subparsers(dest="plugin_command", metavar="ACTION")
    new = sub.add_parser(
        "new", help="write a new platform-plugin distribution anyware-NAME",
        description=(
            "Write a complete, installable distribution anyware-NAME: pyproject.toml with the "
            "anyware.platforms entry point, a Platform subclass with every hook (starting from "
            "the reference ops, or from the torch-device toolkit with --from torchdev), a probe, "
            "a conformance waiver file, a README and a CI workflow. With --device-type cpu it "
            "installs (pip install -e DIR) and passes 'anyware conformance --platform NAME' as "
            "generated; for another device its probe reports 'unavailable' until you write it."),
    )
    new.add_argument("name", metavar="NAME",
                     help="platform name (lowercase letters, digits, '_'): --platform NAME, "
                          "package anyware_NAME, distribution anyware-NAME")
    new.add_argument("--dir", metavar="DIR", default=None,
                     help="where to write it (default: ./anyware-NAME); must be empty")
    new.add_argument("--device-type", metavar="TYPE", default=None,
                     help="the torch device type of the platform's tensors (default: cpu; "
                          "--from torchdev needs a device module torch.TYPE, so not cpu)")
    new.add_argument("--from", dest="base", choices=BASES, default="cpu",
                     help="cpu: a Platform on the reference ops (default); torchdev: "
                          "anyware_torchdev.TorchDevicePlatform for a torch.<type> device module")
    new.add_argument("--force", action="store_true",
                     help="write into a non-empty --dir, overwriting the generated files")
    new.set_defaults(func=run_new)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_new(args: argparse.Namespace) -> int:
    try:
        spec = validate(args.name, args.device_type or "cpu", args.base)
        taken = installed_platform(spec.name)
        if taken:
            raise PluginNameError(f"a platform named {spec.name!r} is already installed: "
                                  f"{taken}; choose another name (platform names are unique)")
        directory = Path(args.dir) if args.dir else Path.cwd() / spec.dist
        files = generate(spec, directory, force=args.force)
    except PluginNameError as exc:
        print(f"anyware: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {spec.dist} ({len(files)} files) into {directory}")
    print("next:")
    print(f"  pip install -e {directory}")
    print("  anyware platforms")
    if spec.device_type == "cpu":
        print(f"  anyware conformance --platform {spec.name} --report out/")
    else:
        print(f"  write {spec.cls}._probe and the TODO({spec.name}) hooks in "
              f"{directory / spec.pkg / 'platform.py'}, then run the conformance suite on "
              "the device")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from anyware.cli.main import main

    sys.exit(main(["plugin", "new", *sys.argv[1:]]))
