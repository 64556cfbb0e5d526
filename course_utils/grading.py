"""nbgrader, driven for one notebook at a time, and the release check.

``grade_notebook(path)`` autogrades a single notebook in a throw-away course directory
built from this repository's ``solutions/`` (so the gradebook, hidden tests and
checksums are the instructor's), and returns one row per graded cell with the first
line of its error. ``release()`` regenerates ``notebooks/`` from ``solutions/``;
``release(check=True)`` only reports what is out of date.

Both run nbgrader through its Python API with the repository's ``nbgrader_config.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"
STUDENT = "student"


class NotACourseNotebook(ValueError):
    """The path is not a notebook that belongs to one of the course's labs."""


class GradingFailed(RuntimeError):
    """nbgrader itself failed (not the student's code)."""


@dataclass
class CellGrade:
    """One graded cell: its nbgrader id, points, and the first line of its error (empty if it passed)."""

    cell_id: str
    score: float
    max_score: float
    message: str = ""


@dataclass
class GradeReport:
    """The autograde result for one notebook."""

    assignment: str
    notebook: str
    cells: list[CellGrade] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(cell.score for cell in self.cells)

    @property
    def max_score(self) -> float:
        return sum(cell.max_score for cell in self.cells)

    def table(self) -> str:
        """A plain-text table: cell id, points earned/possible, message."""
        width = max([len("cell"), *(len(cell.cell_id) for cell in self.cells)])
        lines = [f"{self.assignment}/{self.notebook}.ipynb", f"{'cell':<{width}}  {'points':>9}  message"]
        lines.append("-" * (width + 2 + 9 + 2 + 40))
        for cell in self.cells:
            points = f"{cell.score:g} / {cell.max_score:g}"
            lines.append(f"{cell.cell_id:<{width}}  {points:>9}  {cell.message or 'passed'}")
        lines.append("-" * (width + 2 + 9 + 2 + 40))
        lines.append(f"{'total':<{width}}  {f'{self.score:g} / {self.max_score:g}':>9}")
        return "\n".join(lines)


def assignments() -> list[str]:
    """The lab folders under ``solutions/``, in course order."""
    return sorted(path.name for path in SOLUTIONS.iterdir() if path.is_dir() and any(path.glob("*.ipynb")))


def _config(root: Path):
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config())
    config.CourseDirectory.root = str(root)
    config.NbGraderAPI.log_level = "WARN"
    return config


def _api(root: Path):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    # nbgrader runs `alembic` as a subprocess to create the gradebook: it must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    config = _config(root)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _generate(api, root: Path, assignment: str) -> None:
    shutil.copytree(SOLUTIONS / assignment, root / "solutions" / assignment)
    result = api.generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise GradingFailed(f"nbgrader generate_assignment {assignment} failed:\n{result.get('error', '')}")


def find_assignment(path: Path) -> str:
    """The lab a notebook belongs to: its folder's name, or else the lab that has a notebook of that name."""
    labs = assignments()
    if path.parent.name in labs and (SOLUTIONS / path.parent.name / path.name).exists():
        return path.parent.name
    matches = [lab for lab in labs if (SOLUTIONS / lab / path.name).exists()]
    if len(matches) != 1:
        known = ", ".join(f"{lab}/{nb.name}" for lab in labs for nb in sorted((SOLUTIONS / lab).glob("*.ipynb")))
        raise NotACourseNotebook(f"{path} is not a notebook of this course; expected one of: {known}")
    return matches[0]


def _read_notebook(path: Path):
    if path.suffix != ".ipynb" or not path.is_file():
        raise NotACourseNotebook(f"{path} is not a notebook file; expected an existing .ipynb file")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several types for broken JSON
        raise NotACourseNotebook(f"{path} could not be read as a Jupyter notebook: {error}") from error


def _first_error_line(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = (output.get("evalue") or "").strip().splitlines()
            return f"{output.get('ename', 'Error')}: {value[0] if value else ''}".rstrip(": ")
    return ""


def grade_notebook(path: str | Path) -> GradeReport:
    """Autograde one notebook against the instructor's gradebook; see the module docstring."""
    path = Path(path).resolve()
    _read_notebook(path)
    assignment = find_assignment(path)
    name = path.stem
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy session warnings are not the student's concern
        root = Path(tmp)
        api = _api(root)
        _generate(api, root, assignment)
        submitted = root / "submitted" / STUDENT / assignment
        submitted.mkdir(parents=True)
        shutil.copy(path, submitted / path.name)
        result = api.autograde(assignment, STUDENT, force=True, create=True)
        if not result["success"]:
            raise GradingFailed(
                f"nbgrader autograde failed for {path}:\n{result.get('error') or result.get('log', '')}"
            )

        graded = nbformat.read(root / "autograded" / STUDENT / assignment / path.name, as_version=4)
        messages = {
            cell.metadata["nbgrader"]["grade_id"]: _first_error_line(cell)
            for cell in graded.cells
            if cell.metadata.get("nbgrader", {}).get("grade")
        }
        report = GradeReport(assignment, name)
        with Gradebook(api.coursedir.db_url) as gradebook:
            notebook = gradebook.find_submission_notebook(name, assignment, STUDENT)
            grades = {grade.name: grade for grade in notebook.grades}
            for cell_id, message in messages.items():
                grade = grades[cell_id]
                report.cells.append(CellGrade(cell_id, float(grade.score or 0), float(grade.max_score), message))
        return report


def _normalized(path: Path) -> list:
    notebook = nbformat.read(path, as_version=4)
    return [(cell.get("id"), cell.cell_type, cell.source, cell.metadata) for cell in notebook.cells]


def release(labs: list[str] | None = None, check: bool = False) -> list[str]:
    """Regenerate ``notebooks/<lab>`` from ``solutions/<lab>`` for ``labs`` (default: all), or with
    ``check`` only list what is stale. Returns the stale paths."""
    labs = labs or assignments()
    unknown = sorted(set(labs) - set(assignments()))
    if unknown:
        raise ValueError(f"labs {unknown} are not in solutions/; expected some of {assignments()}")
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        root = Path(tmp)
        api = _api(root)
        for lab in labs:
            _generate(api, root, lab)
        fresh = root / "notebooks"
        stale = []
        for lab in labs:
            new_files = {p.relative_to(fresh) for p in (fresh / lab).rglob("*") if p.is_file()}
            old_files = {p.relative_to(NOTEBOOKS) for p in (NOTEBOOKS / lab).rglob("*") if p.is_file()}
            for relative in sorted(new_files | old_files):
                new, old = fresh / relative, NOTEBOOKS / relative
                if not (new.exists() and old.exists()):
                    stale.append(str(relative))
                elif relative.suffix == ".ipynb":
                    if _normalized(new) != _normalized(old):
                        stale.append(str(relative))
                elif new.read_bytes() != old.read_bytes():
                    stale.append(str(relative))
        if not check:
            for lab in labs:
                shutil.rmtree(NOTEBOOKS / lab, ignore_errors=True)
                shutil.copytree(fresh / lab, NOTEBOOKS / lab)
        return stale
