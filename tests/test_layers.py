"""The package's layers: the models import nothing from the packages built on them,
and the constants they share agree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import course_utils
from course_utils import ehr, masking
from course_utils.models.behrt import BehrtConfig

MODELS = Path(course_utils.__file__).parent / "models"
ABOVE_THE_MODELS = ("ehr", "experiments", "grading", "checks", "viz")


def imported_modules(path: Path) -> set[str]:
    """Every module that ``path`` imports, at any depth of its syntax tree (a function body's imports too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)  # from course_utils import ehr
    return modules


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.py")), ids=lambda path: path.name)
def test_models_import_nothing_from_the_data_experiment_grading_check_or_plotting_packages(path):
    above = {f"course_utils.{package}" for package in ABOVE_THE_MODELS}
    upward = sorted(
        module for module in imported_modules(path) if any(module == p or module.startswith(f"{p}.") for p in above)
    )
    assert upward == [], f"{path.name} imports {upward}: models must not depend on the packages built on them"


def test_the_import_check_sees_every_form_of_import(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "import course_utils.viz\nfrom course_utils import ehr\n"
        "def f():\n    from course_utils.checks.bert import REFERENCES\n"
    )
    assert {"course_utils.viz", "course_utils.ehr", "course_utils.checks.bert"} <= imported_modules(source)


def test_behrts_age_range_is_the_one_the_ehr_sequences_clamp_to():
    assert BehrtConfig(vocab_size=10).max_age == ehr.MAX_AGE


def test_the_ehr_package_shares_the_special_tokens_of_masking():
    assert ehr.STRUCTURAL_IDS is masking.STRUCTURAL_IDS
    assert (ehr.SPECIAL_TOKENS, ehr.PAD_ID, ehr.MASK_ID) == (masking.SPECIAL_TOKENS, masking.PAD_ID, masking.MASK_ID)
