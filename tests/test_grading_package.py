"""How the grading package holds together: the grading process never imports the sandbox side (the two
share only the wire format), and grading refuses to run student code unconfined unless a caller allows it."""

import ast
import inspect
from pathlib import Path

import pytest

from course_utils import grading
from course_utils.grading import classroom, grader, sandbox
from course_utils.grading.course import read_notebook

PACKAGE = "course_utils.grading"
FOLDER = Path(grading.__file__).parent
SANDBOX_SIDE = f"{PACKAGE}.worker"
SANDBOX_MODULES = ("worker.py", "zygote.py")  # the zygote forks workers, so it is on the sandbox side too
STUDENT_LAB0 = grading.NOTEBOOKS / "lab00_setup" / "lab00_setup.ipynb"


def imported(source: str, package: str = PACKAGE) -> set[str]:
    """The modules ``source`` (a module of ``package``) imports, relative imports resolved; ``from X import y``
    counts as importing ``X`` and ``X.y``, since ``y`` may be a submodule."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    "line",
    [
        "import course_utils.grading.worker",
        "from course_utils.grading.worker import main",
        "from course_utils.grading import worker",
        "from . import worker",
        "from .worker import main",
    ],
)
def test_every_way_of_importing_the_sandbox_side_is_seen(line):
    assert SANDBOX_SIDE in imported(line)


GRADING_PROCESS = sorted(path for path in FOLDER.glob("*.py") if path.name not in SANDBOX_MODULES) + [
    FOLDER.parent / "__main__.py"
]


@pytest.mark.parametrize("path", GRADING_PROCESS, ids=lambda path: path.name)
def test_no_module_of_the_grading_process_imports_the_sandbox_side(path):
    imports = imported(path.read_text())
    for module in SANDBOX_MODULES:
        name = f"{PACKAGE}.{module.removesuffix('.py')}"
        assert name not in imports, f"{path.name} imports {name}"


def test_the_sandbox_side_imports_only_the_wire_format_and_the_definitions_splitter():
    modules = imported((FOLDER / "worker.py").read_text())
    assert {name.split(".")[2] for name in modules if name.startswith(f"{PACKAGE}.")} == {"channel", "definitions"}


def test_grading_a_submission_or_a_class_refuses_to_run_unconfined_unless_allowed(tmp_path, monkeypatch):
    assert sandbox.ALLOW_UNSANDBOXED is False
    for function in (grader.grade_submission, classroom.autograde):
        assert inspect.signature(function).parameters["allow_unsandboxed"].default is sandbox.ALLOW_UNSANDBOXED
    monkeypatch.setattr(sandbox, "status", lambda: (False, "no sandbox: faked for this test"))
    with pytest.raises(RuntimeError, match="--allow-unsandboxed"):
        grader.grade_submission(read_notebook(STUDENT_LAB0), STUDENT_LAB0)
    with pytest.raises(RuntimeError, match="--allow-unsandboxed"):
        classroom.autograde(tmp_path, tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()


@pytest.mark.notebook
def test_the_grade_command_grades_one_notebook_without_a_sandbox_and_says_so_first(monkeypatch):
    monkeypatch.setattr(sandbox, "status", lambda: (False, "no sandbox: faked for this test"))
    report = grading.grade_notebook(STUDENT_LAB0)
    assert report.notes[0] == "no sandbox: faked for this test"
    assert report.score == 0 and report.max_score == 2, report.table()
