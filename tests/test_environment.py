"""The three install routes agree: pyproject ranges, environment.yml, and the exact pins in constraints.txt."""

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


def conda_requirements() -> dict[str, Requirement]:
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    requirements = [Requirement(line) for line in pip_section if not line.startswith("-e")]
    return {canonicalize_name(r.name): r for r in requirements}


def pins() -> dict[str, Version]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pinned = [line.split("==") for line in lines if "==" in line and not line.startswith("#")]
    return {canonicalize_name(name): Version(version) for name, version in pinned}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    ours, conda = pyproject_requirements(), conda_requirements()
    assert set(conda) == set(
        ours
    ), f"only in pyproject: {set(ours) - set(conda)}; only in environment.yml: {set(conda) - set(ours)}"
    for name, requirement in ours.items():
        assert conda[name].specifier == requirement.specifier, f"{name}: {conda[name]} vs {requirement}"


def test_constraints_pin_every_dependency_inside_its_range():
    pinned = pins()
    for name, requirement in pyproject_requirements().items():
        assert name in pinned, f"{name} has no exact pin in constraints.txt"
        assert requirement.specifier.contains(
            pinned[name], prereleases=True
        ), f"{name}=={pinned[name]} is outside {requirement}"


def test_reference_machine_pins_are_the_tested_torch_builds():
    pinned = pins()
    assert pinned["torch"] == Version("2.14.1")
    assert pinned["torchvision"] == Version("0.29.1")


def third_party_imports(package: Path) -> set[str]:
    """Top-level names of the modules that ``package``'s source imports, standard library and itself excluded."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {package.name, "__future__"}


def test_every_package_that_course_utils_imports_is_declared():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    optional = {canonicalize_name(Requirement(line).name) for lines in extras.values() for line in lines}
    declared = set(pyproject_requirements()) | optional
    distributions = packages_distributions()
    undeclared = {
        module: distributions.get(module, ["?"])
        for module in third_party_imports(REPO / "course_utils")
        if not declared & {canonicalize_name(name) for name in distributions.get(module, [module])}
    }
    assert not undeclared, f"imported by course_utils but not in pyproject.toml's dependencies: {undeclared}"
