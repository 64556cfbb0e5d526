"""What the students are handed: the released notebooks, and the student copy of the course.

``release()`` regenerates ``notebooks/`` from ``solutions/`` with nbgrader; ``release(check=True)``
only lists what is stale. It refuses to overwrite a notebook that holds outputs or differs from
the last release (a student's work), unless forced, and then it backs the folder up first.
``export_student()`` writes a student copy: the released notebooks, ``course_utils``, the install
files, and the student's README, Makefile and .gitignore from ``templates/student/``; for assigned
labs it withholds the answers (``assigned``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import nbformat

from course_utils.grading.course import NOTEBOOKS, REPO, STUB, assignments, generate, nbgrader_api


class ReleaseRefused(RuntimeError):
    """``notebooks/`` holds work that a release would overwrite."""


def _normalized(path: Path) -> list:
    notebook = nbformat.read(path, as_version=4)
    return [(cell.get("id"), cell.cell_type, cell.source, cell.metadata) for cell in notebook.cells]


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
                "notebooks/ holds work that a release would overwrite: "
                + ", ".join(worked_on)
                + ". Save it elsewhere, or run `python -m course_utils release --force`, "
                "which backs the folders up first."
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for lab in labs:
            if force and (NOTEBOOKS / lab).exists():
                shutil.copytree(NOTEBOOKS / lab, NOTEBOOKS / f"{lab}.backup-{stamp}")
            shutil.rmtree(NOTEBOOKS / lab, ignore_errors=True)
            shutil.copytree(fresh / lab, NOTEBOOKS / lab)
        return stale


STUDENT_FILES = ("pyproject.toml", "constraints.txt", "environment.yml")
# Jupyter settings that the student's `make lab` reads (JUPYTER_CONFIG_PATH=jupyter): nbgrader's instructor UI
# (create assignment, formgrader, courses) and its Validate button, which re-runs a whole notebook, are off.
JUPYTER_SETTINGS = {
    "page_config.json": "jupyter/labconfig/page_config.json",
    "jupyter_server_config.json": "jupyter/jupyter_server_config.json",
}


def _template(name: str) -> bytes:
    """The file ``name`` of ``templates/student/``, as the student copy gets it."""
    return (resources.files(__package__) / "templates" / "student" / name).read_bytes()


def export_student(destination: Path, assign: list[str] | None = None) -> Path:
    """Write a student copy of the course into ``destination`` (which must not exist yet): the released
    notebooks, ``course_utils``, the install files, a student README and a Makefile. No ``solutions/``,
    no hidden tests, no instructor tooling. Without ``assign`` it is a self-study copy, answers readable in
    ``course_utils``; the labs in ``assign`` have their answers withheld (``assigned.withhold``)."""
    from course_utils.grading.assigned import check_labs, withhold

    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; choose a new folder for the student copy")
    if assign is not None:
        check_labs(assign)
    stale = release(check=True)
    if stale:
        raise ReleaseRefused(
            f"notebooks/ is out of date with solutions/ ({', '.join(stale)}); run `make release` first"
        )
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.backup-*")
    destination.mkdir(parents=True)
    shutil.copytree(REPO / "course_utils", destination / "course_utils", ignore=ignore)
    notebooks = destination / "notebooks"
    notebooks.mkdir()
    for lab in assignments():
        shutil.copytree(NOTEBOOKS / lab, notebooks / lab, ignore=ignore)
    for name in STUDENT_FILES:
        shutil.copy2(REPO / name, destination / name)
    if assign:
        withhold(destination, assign)
        note = _template("README-assigned.md").decode()
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        readme = _template("README.md") + note.format(labs=", ".join(assign), python=python).encode()
    else:
        readme = _template("README.md") + _template("README-self-study.md")
    (destination / "README.md").write_bytes(readme)
    (destination / "Makefile").write_bytes(_template("Makefile"))
    (destination / ".gitignore").write_bytes(_template("gitignore"))  # dotless there, so git never applies it
    for name, target in JUPYTER_SETTINGS.items():
        (destination / target).parent.mkdir(parents=True, exist_ok=True)
        (destination / target).write_bytes(_template(name))
    return destination
