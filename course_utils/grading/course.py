"""The course's folders and nbgrader: which labs exist, which lab a notebook is, and the release.

``release()`` regenerates ``notebooks/`` from ``solutions/`` with nbgrader; ``release(check=True)``
only lists what is stale. It refuses to overwrite a notebook that holds outputs or differs from
the last release (a student's work), unless forced, and then it backs the folder up first.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent.parent
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"


class NotACourseNotebook(ValueError):
    """The path is not a notebook that belongs to one of the course's labs."""


class GradingFailed(RuntimeError):
    """nbgrader itself failed (not the student's code)."""


class ReleaseRefused(RuntimeError):
    """``notebooks/`` holds work that a release would overwrite."""


def assignments(folder: Path | None = None) -> list[str]:
    """The lab folders under ``solutions/`` (or ``folder``), in course order."""
    folder = folder or SOLUTIONS
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if path.is_dir() and any(path.glob("*.ipynb")))


def read_notebook(path: Path):
    """The notebook at ``path``; ``NotACourseNotebook`` for a missing file, another suffix, or broken JSON."""
    if path.suffix != ".ipynb" or not path.is_file():
        raise NotACourseNotebook(f"{path} is not a notebook file; expected an existing .ipynb file")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several types for broken JSON
        raise NotACourseNotebook(f"{path} could not be read as a Jupyter notebook: {error}") from error


def _config(root: Path):
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config())
    config.CourseDirectory.root = str(root)
    config.NbGraderAPI.log_level = "WARN"
    return config


def nbgrader_api(root: Path):
    """nbgrader's API on the course directory ``root``, configured by the repository's ``nbgrader_config.py``."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    # nbgrader runs `alembic` as a subprocess to create the gradebook: it must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    config = _config(root)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def generate(api, root: Path, assignment: str) -> None:
    """Copy ``solutions/<assignment>`` into the course ``root`` and run nbgrader's generate_assignment."""
    if not (root / "solutions" / assignment).exists():
        shutil.copytree(SOLUTIONS / assignment, root / "solutions" / assignment)
    result = api.generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise GradingFailed(f"nbgrader generate_assignment {assignment} failed:\n{result.get('error', '')}")


def _normalized(path: Path) -> list:
    notebook = nbformat.read(path, as_version=4)
    return [(cell.get("id"), cell.cell_type, cell.source, cell.metadata) for cell in notebook.cells]


STUB = "raise NotImplementedError()"


def student_work(path: Path) -> str:
    """Why the released notebook at ``path`` looks worked on ("has outputs", "exercise X answered"), or ""."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if any(cell.get("outputs") or cell.get("execution_count") for cell in code):
        return "has outputs"
    answered = [
        cell.metadata["nbgrader"].get("grade_id", "?")
        for cell in code
        if cell.metadata.get("nbgrader", {}).get("solution") and STUB not in cell.source
    ]
    return f"exercise {', '.join(answered)} answered" if answered else ""


def release(labs: list[str] | None = None, check: bool = False, force: bool = False) -> list[str]:
    """Regenerate ``notebooks/<lab>`` from ``solutions/<lab>`` for ``labs`` (default: all), or with
    ``check`` only list what is stale. Returns the stale paths.

    A notebook under ``notebooks/`` that holds outputs, or an exercise whose stub was replaced, is
    someone's work: without ``force`` the release refuses (``ReleaseRefused``);
    with ``force`` it first copies ``notebooks/<lab>`` to ``notebooks/<lab>.backup-<time>``.
    """
    labs = labs or assignments()
    unknown = sorted(set(labs) - set(assignments()))
    if unknown:
        raise ValueError(f"labs {unknown} are not in solutions/; expected some of {assignments()}")
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        root = Path(tmp)
        api = nbgrader_api(root)
        for lab in labs:
            generate(api, root, lab)
        fresh = root / "notebooks"
        stale, worked_on = [], []
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
                    if why := student_work(old):
                        worked_on.append(f"{relative} ({why})")
                elif new.read_bytes() != old.read_bytes():
                    stale.append(str(relative))
        if check:
            return stale
        if worked_on and not force:
            raise ReleaseRefused(
                "notebooks/ holds work that a release would overwrite: " + ", ".join(worked_on)
                + ". Save it elsewhere, or run `python -m course_utils release --force`, which backs the folders up first."
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for lab in labs:
            if force and (NOTEBOOKS / lab).exists():
                shutil.copytree(NOTEBOOKS / lab, NOTEBOOKS / f"{lab}.backup-{stamp}")
            shutil.rmtree(NOTEBOOKS / lab, ignore_errors=True)
            shutil.copytree(fresh / lab, NOTEBOOKS / lab)
        return stale
