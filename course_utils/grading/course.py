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
                "notebooks/ holds work that a release would overwrite: "
                + ", ".join(worked_on)
                + ". Save it elsewhere, or run `python -m course_utils release --force`, which backs the folders up first."
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for lab in labs:
            if force and (NOTEBOOKS / lab).exists():
                shutil.copytree(NOTEBOOKS / lab, NOTEBOOKS / f"{lab}.backup-{stamp}")
            shutil.rmtree(NOTEBOOKS / lab, ignore_errors=True)
            shutil.copytree(fresh / lab, NOTEBOOKS / lab)
        return stale


STUDENT_README = """# Masked Prediction, the course: student copy

Hide part of the input, train a model to fill it back in, and it learns the structure of the data
without a single label. Each lab is a notebook under `notebooks/`, with exercises you fill in.

## Two commands

On a machine with Python 3.11 and `make`:

```bash
make lab     # creates .venv, installs the course, and opens JupyterLab on notebooks/
make check   # checks your work: every exercise of every notebook, one line each
make check NB=notebooks/lab01_masking/lab01_masking.ipynb   # one notebook
```

The first run installs PyTorch and friends (a few minutes); later runs reuse `.venv`.

## Working on a lab

1. Open `notebooks/lab00_setup/lab00_setup.ipynb` first; the labs are meant in order.
2. Each exercise is one function with its signature and docstring; replace `raise NotImplementedError()`.
3. The test cell under each exercise runs the visible checks. A failed check names the likely
   misconception and hints at the fix. "Run All" runs every cell, so plots and training cells run
   even while an exercise is unfinished: they use the course's reference implementations.
4. `make check` grades what you wrote the way the instructor's grader does: only the definitions in
   your exercise cells count, they run in a separate process, and an exercise that calls the course's
   own reference implementation of itself earns nothing. Here only the visible checks run; the hidden
   tests run at the instructor's end.

`course_utils/` holds the reference implementations the later labs import, so a lab you struggled
with never blocks the next.
"""

STUDENT_MAKEFILE = """# The student copy's entry points. Everything runs inside .venv, created on first use.
#   make lab     set up and open JupyterLab on the notebooks
#   make check   check your exercises (NB=path/to/notebook.ipynb for one notebook)

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
NB ?= $(wildcard notebooks/*/*.ipynb)

.PHONY: install lab check

$(STAMP): pyproject.toml constraints.txt
\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet -c constraints.txt -e .
\ttouch $(STAMP)

install: $(STAMP)

lab: install
\t$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

check: install
\tfor notebook in $(NB); do $(BIN)/python -m course_utils grade "$$notebook" || exit 1; echo; done
"""

STUDENT_FILES = ("pyproject.toml", "constraints.txt", "environment.yml")


def export_student(destination: Path) -> Path:
    """Write a student copy of the course into ``destination`` (which must not exist yet): the released
    notebooks, ``course_utils``, the install files, a student README and a Makefile. No ``solutions/``,
    no hidden tests, no instructor tooling."""
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; choose a new folder for the student copy")
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
    (destination / "README.md").write_text(STUDENT_README)
    (destination / "Makefile").write_text(STUDENT_MAKEFILE)
    (destination / ".gitignore").write_text(".venv/\n__pycache__/\n*.egg-info/\n.ipynb_checkpoints/\n")
    return destination
