"""A student copy with an assigned lab (``export-student --assign``): that lab's answers are in no readable
form, earlier labs stay readable, and the course still runs and grades there (Run All, ``make check``).

Each lab's copy is exported once (module-scoped) and used by every test of that lab. Code in a copy runs
with ``PYTHONPATH`` set to the copy, so it imports the copy's ``course_utils``, not this repository's.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from submissions import answers, submission

from course_utils import grading
from course_utils.grading import handout
from course_utils.grading.assigned import stub
from course_utils.grading.channel import resolve
from course_utils.grading.course import read_notebook
from course_utils.grading.definitions import normalized_body
from course_utils.grading.exercises import read_lab
from course_utils.grading.grader import forbidden_references

LABS = grading.assignments()


@functools.cache
def references(lab: str) -> frozenset[str]:
    """The lab's exercise references in ``course_utils`` (``"module:qualname"``)."""
    path = next((grading.SOLUTIONS / lab).glob("*.ipynb"))
    spec = read_lab(read_notebook(path), lab, path.stem)
    return frozenset(t for ts in forbidden_references(spec).values() for t in ts if t.startswith("course_utils."))


@functools.cache
def answer_key(target: str) -> tuple[str, str]:
    """``(normal form, source with whitespace collapsed)`` of the reference's body, docstring left out."""
    source = textwrap.dedent(inspect.getsource(resolve(target)))
    function = ast.parse(source).body[0]
    statements = function.body[1:] if ast.get_docstring(function) else function.body
    lines = source.splitlines()[statements[0].lineno - 1 : function.end_lineno]
    return normalized_body(function), " ".join(" ".join(lines).split())


@functools.cache
def normal_forms(source: str) -> frozenset[str]:
    """The normal forms of every function in ``source`` (most files are alike in every copy: read once)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    return frozenset(normalized_body(node) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def readable_answers(copy: Path, targets) -> set[str]:
    """The ``targets`` whose body is readable in ``copy``: as text in any file but bytecode, or as a function of
    the same normal form (after renaming) in a Python file or a notebook's code cell."""
    texts, trees = [], set()
    for path in copy.rglob("*"):
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if path.suffix == ".ipynb":
            sources = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
        else:
            sources = [path.read_text(errors="replace")]
        for source in sources:
            texts.append(" ".join(source.split()))
            trees |= normal_forms(source)
    text = "\n".join(texts)
    return {target for target in targets if answer_key(target)[0] in trees or answer_key(target)[1] in text}


def export(folder: Path, assign: list[str] | None) -> Path:
    """``export_student`` without its release check (``test_release_is_in_sync_with_solutions`` makes it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handout, "release", lambda check: [])
        return handout.export_student(folder / "copy", assign)


@pytest.fixture(scope="module", params=LABS)
def assigned(request, tmp_path_factory) -> tuple[str, Path]:
    """``(lab, a student copy with that lab assigned)``."""
    return request.param, export(tmp_path_factory.mktemp(request.param), [request.param])


def run_all(copy: Path, lab: str, monkeypatch) -> None:
    """Run All on the copy's student notebook of ``lab``: it reaches the end, with the copy's ``course_utils``,
    and only the unfinished exercises' check cells fail."""
    path = next((copy / "notebooks" / lab).glob("*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import course_utils\nprint(course_utils.__file__)"))
    monkeypatch.setenv("PYTHONPATH", str(copy))
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources).execute()
    *cells, last = [cell for cell in notebook.cells if cell.cell_type == "code"]
    package = last.outputs[0].text.strip()
    assert package == str(copy / "course_utils" / "__init__.py"), f"Run All stopped, or imported {package}"
    for cell in cells:
        for output in cell.outputs:
            if output.output_type == "error":
                assert "raises-exception" in cell.metadata.get("tags", []), f"cell {cell.id}: {output.ename}"
                assert output.ename == "NotImplementedError", f"check cell {cell.id} failed otherwise: {output.ename}"


def test_the_assigned_labs_answers_are_not_readable_in_its_copy(assigned):
    lab, copy = assigned
    assert not readable_answers(copy, references(lab)), "an assigned exercise's reference is readable in the copy"
    compiled = {path.relative_to(copy).with_suffix(".py") for path in copy.rglob("*.pyc")}
    modules = {Path(target.partition(":")[0].replace(".", "/") + ".py") for target in references(lab)}
    assert modules <= compiled and all((copy / module).with_suffix(".pyi").is_file() for module in modules)
    assert not any((copy / module).exists() for module in compiled), "a compiled module also ships its source"


def test_earlier_labs_stay_readable_in_the_copy(assigned):
    lab, copy = assigned
    earlier = {target for other in LABS[: LABS.index(lab)] for target in references(other)} - references(lab)
    assert readable_answers(copy, earlier) == earlier


@pytest.mark.parametrize("assigned", ["lab01_masking"], indirect=True)
def test_a_private_helper_that_a_reference_calls_is_withheld_with_it(assigned):
    lab, copy = assigned  # apply_80_10_10 hands its work to _replace_selected, which mask_spans calls too
    assert not readable_answers(copy, {"course_utils.masking:_replace_selected"})


def test_a_stub_cuts_the_withheld_bodies_and_keeps_every_other_line_at_its_number():
    source = (
        "def shown(x):\n    return x + 1\n\n\nclass Model:\n    def forward(self, x):\n"
        '        """Doubles x."""\n\n        # the trick\n        y = x * 2\n        return y\n\n'
        "    def other(self):\n        return 0\n"
    )
    cut = stub(source, {"Model.forward"}, "model")
    assert len(cut.splitlines()) == len(source.splitlines()) and cut.splitlines()[12:] == source.splitlines()[12:]
    assert "trick" not in cut and "x * 2" not in cut and "return y" not in cut
    assert '"""Doubles x."""' in cut and "return x + 1" in cut and "from model.pyc" in cut
    with pytest.raises(ValueError, match="starts its body on a line it shares"):
        stub("def f(x): return x\n", {"f"}, "model")


def test_a_self_study_copy_holds_every_answer_readable_and_says_so(tmp_path):
    copy = export(tmp_path, None)
    everything = {target for lab in LABS for target in references(lab)}
    assert len(everything) > 40 and readable_answers(copy, everything) == everything
    assert not list(copy.rglob("*.pyc"))
    assert "holds, readable, the answer to\nevery exercise" in (copy / "README.md").read_text()


def test_an_assigned_copy_pins_the_python_that_compiled_it_and_says_which_labs(assigned):
    lab, copy = assigned
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f'requires-python = "=={version}.*"' in (copy / "pyproject.toml").read_text()
    assert re.search(rf"^\s*- python={re.escape(version)}$", (copy / "environment.yml").read_text(), re.M)
    assert f"The exercises of {lab} are assigned" in (copy / "README.md").read_text()


def test_export_refuses_an_unknown_lab_before_writing_anything(tmp_path):
    command = [sys.executable, "-m", "course_utils", "export-student", str(tmp_path / "copy"), "--assign", "lab99"]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "--assign lab99: expected lab folders among lab00_setup" in refused.stderr
    assert not (tmp_path / "copy").exists()


@pytest.mark.notebook
def test_run_all_reaches_the_end_of_the_assigned_labs_notebook_in_its_copy(assigned, monkeypatch):
    lab, copy = assigned
    run_all(copy, lab, monkeypatch)


@pytest.mark.notebook
def test_make_check_grades_the_solution_at_full_visible_marks_in_the_copy(assigned, tmp_path):
    lab, copy = assigned
    path = submission(tmp_path, lab, answers(lab))  # outside the copy, which the other tests read
    command = [sys.executable, "-m", "course_utils", "grade", str(path)]  # what `make check NB=path` runs
    in_copy = {**os.environ, "PYTHONPATH": str(copy)}
    graded = subprocess.run(command, capture_output=True, text=True, cwd=copy, env=in_copy)
    assert graded.returncode == 0, graded.stderr
    earned, possible = re.search(r"^total\s+(\S+) / (\S+)$", graded.stdout, re.M).groups()
    assert float(earned) == float(possible) > 0, graded.stdout
    assert "visible checks only" in graded.stdout


@pytest.mark.notebook
@pytest.mark.parametrize("assigned", ["lab01_masking"], indirect=True)
def test_a_later_lab_that_imports_an_assigned_labs_references_runs_in_that_copy(assigned, monkeypatch):
    lab, copy = assigned
    assert (copy / "course_utils" / "masking.pyc").is_file()
    run_all(copy, "lab02_bert", monkeypatch)  # trains with mask_tokens, which calls Lab 1's references
