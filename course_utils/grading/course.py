"""The course's folders and nbgrader: which labs exist, how a notebook is read, and nbgrader's API on a
course directory. What is handed to students (the release, the student copy) is in ``handout``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent.parent
SOLUTIONS = REPO / "solutions"
NOTEBOOKS = REPO / "notebooks"
STUB = "raise NotImplementedError()"  # the body of an exercise no one has answered yet


class NotACourseNotebook(ValueError):
    """The path is not a notebook that belongs to one of the course's labs."""


class GradingFailed(RuntimeError):
    """nbgrader itself failed (not the student's code)."""


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
