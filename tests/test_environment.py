"""The set-up files agree: pyproject.toml declares ranges (lossviz installs beside the user's torch),
constraints.txt holds the exact versions the two commands install, and environment.yml and the
Makefile install exactly those."""

import importlib.metadata
import json
import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = pathlib.Path(__file__).resolve().parents[1]


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def exact_pins(requirements, source):
    """{normalised name: version} from 'name==version' strings; anything looser is an error."""
    pins = {}
    for line in requirements:
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise AssertionError(f"{source}: {line!r} is not pinned with ==")
        name = normalise(req.name)
        if name in pins:
            raise AssertionError(f"{source}: {name} is listed twice")
        pins[name] = specs[0].version
    return pins


def constraints():
    lines = [line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    return exact_pins([line for line in lines if line], "constraints.txt")


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared():
    """Every requirement of pyproject.toml (core and extras), the self-references left out."""
    project = pyproject()
    reqs = [Requirement(line) for line in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(line) for line in extra]
    return [r for r in reqs if normalise(r.name) != "lossviz"]


def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pip_lines():
    sections = [d["pip"] for d in environment()["dependencies"] if isinstance(d, dict)]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    # Options such as `-e .` (install lossviz itself) are not dependencies.
    return [line for line in sections[0] if not line.startswith("-")]


def test_pyproject_declares_ranges_not_pins_and_a_small_core():
    core = {normalise(Requirement(line).name) for line in pyproject()["dependencies"]}
    assert core == {"torch", "numpy", "tqdm"}
    for req in declared():
        assert not any(s.operator == "==" for s in req.specifier), f"{req} is an exact pin: use a range"


def test_every_declared_package_has_a_locked_version_inside_its_range():
    locked = constraints()
    for req in declared():
        name = normalise(req.name)
        assert name in locked, f"{name} is declared in pyproject.toml but has no version in constraints.txt"
        assert req.specifier.contains(locked[name], prereleases=True), f"constraints.txt {name}=={locked[name]} is outside {req}"
    assert set(locked) == {normalise(r.name) for r in declared()}, "constraints.txt locks a package nobody declares"


def test_environment_yml_installs_exactly_the_locked_versions():
    assert exact_pins(environment_pip_lines(), "environment.yml") == constraints()


def test_environment_yml_uses_conda_forge_and_a_supported_python():
    env = environment()
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pythons = [d for d in conda if re.match(r"python\b", d)]
    assert len(pythons) == 1, conda
    version = pythons[0].split("=", 1)[1].lstrip("=")
    assert version in SpecifierSet(pyproject()["requires-python"])
    assert "pip" in conda


def test_makefile_installs_the_pinned_torch_first_then_everything_under_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^TORCH_PIN\s*:?=\s*(\S+)", makefile, re.M)
    assert match, "Makefile has no TORCH_PIN"
    assert exact_pins([match.group(1)], "Makefile") == {"torch": constraints()["torch"]}
    installs = re.findall(r"pip install (.*)", makefile)
    assert installs and all("-c constraints.txt" in line for line in installs), installs


def test_requires_python_is_true_of_every_locked_package():
    """No locked package may need a newer Python than pyproject.toml's lowest one."""
    lowest = re.search(r">=\s*(\d+\.\d+)", pyproject()["requires-python"]).group(1)
    for name, version in constraints().items():
        try:
            meta = importlib.metadata.metadata(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if meta["Version"].split("+")[0] != version:
            continue                      # another version installed here: its metadata says nothing
        needs = meta.get("Requires-Python")
        if needs:
            assert SpecifierSet(needs).contains(f"{lowest}.0"), f"{name}=={version} needs Python {needs}"


def test_every_third_party_import_of_the_package_is_declared():
    """An import the package makes (at the top or in a function) must come from a declared package."""
    import ast
    import sys

    modules = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml",
               "IPython": "ipykernel", "matplotlib_inline": "ipykernel",   # what a notebook kernel brings
               "pytorch_metric_learning": "pytorch-metric-learning"}
    names = {normalise(r.name) for r in declared()} | {"lossviz"}
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "lossviz").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in stdlib:
                    continue
                assert normalise(modules.get(top, top)) in names, f"{path.name} imports {top}, which no extra declares"


def test_the_version_is_written_once():
    import lossviz

    assert pyproject()["dynamic"] == ["version"] and "version" not in pyproject()
    assert importlib.metadata.version("lossviz") == lossviz.__version__


def test_license_and_urls_are_declared():
    project = pyproject()
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    assert project["scripts"]["lossviz-train"] == "lossviz.cli:main"


@pytest.mark.parametrize(
    "lines, message",
    [(["numpy>=2"], "not pinned"), (["numpy==2.4.6", "NumPy==2.4.6"], "listed twice")],
)
def test_exact_pins_rejects_loose_or_duplicate_requirements(lines, message):
    with pytest.raises(AssertionError, match=message):
        exact_pins(lines, "example")


def _present_config(*args) -> dict:
    """The kernel pools `make present` would give Voila (a dry run: nothing is started)."""
    out = subprocess.run(["make", "-n", "present", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if "voila.json" in l)
    return json.loads(line.split("echo '", 1)[1].split("' >", 1)[0])["VoilaKernelManager"]["kernel_pools_config"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_present_preheats_the_named_notebooks_only():
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    pools = _present_config()                                      # the list: the tour and 01
    assert pools == {"default": {"pool_size": 0}, notebooks[0]: {"pool_size": 1}, notebooks[1]: {"pool_size": 1}}
    pools = _present_config("PREHEAT=09 14")
    assert set(pools) == {"default", *(n for n in notebooks if n[:2] in ("09", "14"))}
    assert len(_present_config("PREHEAT=all")) == len(notebooks) + 1
    assert _present_config("NB=02") == {"default": {"pool_size": 1}}    # one notebook: its kernel
