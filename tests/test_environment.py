"""pyproject.toml, environment.yml and the Makefile pin the same packages at the same versions."""

import pathlib
import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = pathlib.Path(__file__).resolve().parents[1]


def normalise(name):
    return name.lower().replace("_", "-")


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


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pyproject_pins():
    project = pyproject()
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return exact_pins(lines, "pyproject.toml")


def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pip_lines():
    sections = [d["pip"] for d in environment()["dependencies"] if isinstance(d, dict)]
    assert len(sections) == 1, "environment.yml needs exactly one pip: section"
    # Options such as `-e .` (install lossviz itself) are not dependencies.
    return [line for line in sections[0] if not line.startswith("-")]


def test_environment_yml_pins_match_pyproject():
    assert exact_pins(environment_pip_lines(), "environment.yml") == pyproject_pins()


def test_environment_yml_uses_conda_forge_and_a_supported_python():
    env = environment()
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pythons = [d for d in conda if re.match(r"python\b", d)]
    assert len(pythons) == 1, conda
    version = pythons[0].split("=", 1)[1].lstrip("=")
    assert version in SpecifierSet(pyproject()["requires-python"])
    assert "pip" in conda


def test_makefile_installs_the_pinned_torch_first():
    match = re.search(r"^TORCH_PIN\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no TORCH_PIN"
    assert exact_pins([match.group(1)], "Makefile") == {"torch": pyproject_pins()["torch"]}


@pytest.mark.parametrize(
    "lines, message",
    [(["numpy>=2"], "not pinned"), (["numpy==2.4.6", "NumPy==2.4.6"], "listed twice")],
)
def test_exact_pins_rejects_loose_or_duplicate_requirements(lines, message):
    with pytest.raises(AssertionError, match=message):
        exact_pins(lines, "example")
