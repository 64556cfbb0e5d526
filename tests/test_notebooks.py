"""Every lab end to end: solutions run cleanly and earn full marks, student copies earn zero,
the release is in sync, and committed notebooks carry no outputs and valid nbgrader metadata.

New labs are picked up automatically from ``solutions/<lab>/*.ipynb``.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from html import unescape
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils import grading

SOLUTION_NOTEBOOKS = sorted(grading.SOLUTIONS.glob("*/*.ipynb"))
RELEASED_NOTEBOOKS = sorted(grading.NOTEBOOKS.glob("*/*.ipynb"))
IDS = [f"{path.parent.name}/{path.name}" for path in SOLUTION_NOTEBOOKS]


def student_copy(solution: Path) -> Path:
    return grading.NOTEBOOKS / solution.parent.name / solution.name


@functools.cache
def graded(path: Path) -> grading.GradeReport:
    return grading.grade_notebook(path)


# Run first in the kernel: figures show inline as in JupyterLab, and each figure's output also carries, as
# application/json, its dpi and its smallest font size (visible, non-empty text only).
FIGURE_PROBE = """\
%matplotlib inline
import matplotlib.text
from matplotlib.figure import Figure


def _figure_text(fig):
    fig.draw_without_rendering()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    return {"dpi": fig.dpi, "min_font_pt": min((t.get_fontsize() for t in texts), default=None)}


get_ipython().display_formatter.formatters["application/json"].for_type(Figure, _figure_text)
"""
# JupyterLab shows an image at its pixel size up to the output area's width, about 900 px beside the file
# browser in a 1366-px window; a wider figure is shrunk, and its text with it.
OUTPUT_WIDTH_PX = 900
MIN_FONT_PT = 9
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}


def table_min_width(html: str) -> int:
    """The narrowest an HTML table can render, in px: per column (counted from the right, so that index and
    header rows line up), its longest unbreakable word at about 7 px a character, plus 16 px of padding."""
    words = {}
    for row in re.findall(r"<tr.*?</tr>", html, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        for column, cell in enumerate(reversed(cells)):
            longest = max(map(len, unescape(re.sub(r"<[^>]+>", "", cell)).split()), default=0)
            words[column] = max(words.get(column, 0), longest)
    return sum(7 * longest + 16 for longest in words.values())


def png_width(encoded: str) -> int:
    """The pixel width in a base64 PNG's header."""
    return int.from_bytes(base64.b64decode(encoded)[16:20], "big")


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=IDS)
def test_solution_notebook_executes_cleanly_and_saves_what_a_reopened_notebook_can_show(path):
    """No errors; no progress-bar widget (its state is not saved: a reopened notebook would show an error in
    its place); any other widget says in plain text that its cell needs re-running; every figure fits the
    output area at its default size with text of at least 9 pt, and so does every table."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(FIGURE_PROBE))
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    print(f"{path.name} ran in {time.perf_counter() - start:.1f} s")
    errors = [cell for cell in notebook.cells if any(o.get("output_type") == "error" for o in cell.get("outputs", []))]
    assert not errors, f"{path.name}: cells raised errors: {[c.get('id') for c in errors]}"

    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [model_id for model_id, model in state.items() if model.get("model_name") in PROGRESS_MODELS]
    assert not bars, f"{path.name} saved {len(bars)} progress-bar widgets; use course_utils.progress.tqdm"
    figures, problems = 0, []
    for cell in notebook.cells[1:]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "re-run this cell" not in data.get("text/plain", ""):
                problems.append(f"cell {cell.id}: a widget whose text fallback does not say to re-run its cell")
            if "<table" in data.get("text/html", "") and table_min_width(data["text/html"]) > OUTPUT_WIDTH_PX:
                problems.append(f"cell {cell.id}: a table at least {table_min_width(data['text/html'])} px wide")
            if "image/png" not in data:
                continue
            figures += 1
            width, text = png_width(data["image/png"]), data.get("application/json", {})
            if text.get("dpi") != 100 or width > OUTPUT_WIDTH_PX:
                problems.append(f"cell {cell.id}: a figure {width} px wide at {text.get('dpi')} dpi")
            if (text.get("min_font_pt") or MIN_FONT_PT) < MIN_FONT_PT:
                problems.append(f"cell {cell.id}: a figure with {text['min_font_pt']} pt text")
    print(f"{path.name}: {figures} figures checked")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=IDS)
def test_solution_notebook_earns_full_marks(path):
    report = graded(path)
    assert report.cells, f"{path.name} has no graded cells"
    failed = [f"{cell.cell_id}: {cell.message}" for cell in report.cells if cell.score != cell.max_score]
    assert not failed, "the solution lost points:\n" + "\n".join(failed)
    assert report.score == report.max_score > 0


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=IDS)
def test_untouched_student_notebook_earns_zero_with_not_implemented(path):
    report = graded(student_copy(path))
    assert report.max_score == graded(path).max_score, "student and solution copies grade different cells"
    for cell in report.cells:
        assert cell.score == 0, f"{cell.cell_id} gives points for an unattempted exercise"
        assert "NotImplementedError" in cell.message, f"{cell.cell_id} fails for another reason: {cell.message!r}"


def is_check_cell(cell) -> bool:
    """An nbgrader autograder-test cell: the visible checks (and, in solutions/, the hidden tests)."""
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLUTION_NOTEBOOKS, ids=IDS)
def test_run_all_reaches_the_end_of_an_untouched_student_notebook(path):
    student = student_copy(path)
    notebook = nbformat.read(student, as_version=4)
    # nbclient, like JupyterLab's Run All, stops at an error unless the cell is tagged raises-exception.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(student.parent)}}
    ).execute()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells[-1].execution_count is not None, "Run All stopped before the last cell"
    errors = {cell.id: [o for o in cell.outputs if o.output_type == "error"] for cell in code_cells}
    failed = {cell_id for cell_id, outputs in errors.items() if outputs}
    assert failed == {cell.id for cell in code_cells if is_check_cell(cell)}, "only the unfinished checks fail"
    for cell_id in failed:
        (error,) = errors[cell_id]
        assert error.ename == "NotImplementedError"
        assert len(error.traceback) <= 3 and "is not written yet" in error.traceback[0], error.traceback


def test_a_failed_check_reads_as_one_short_message_and_run_all_goes_on():
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "from course_utils.checks.masking import check_build_labels\n"
            "def build_labels(input_ids, selected):\n"
            "    return input_ids.clone()\n"
            "check_build_labels(build_labels)",
            metadata={"tags": ["raises-exception"]},
        ),
        nbformat.v4.new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]}),
        nbformat.v4.new_code_cell("print('reached the end')"),
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    check, other, last = notebook.cells
    (error,) = check.outputs
    assert error.output_type == "error" and error.ename == "Misconception"
    assert "check_build_labels" in error.traceback[0] and len(error.traceback) <= 4, error.traceback
    assert not any("course_utils/checks" in line for line in error.traceback), "the checks' source stays hidden"
    assert other.outputs[0].ename == "ZeroDivisionError" and len(other.outputs[0].traceback) > 3, "others keep it"
    assert last.outputs[0].text == "reached the end\n"


def test_release_is_in_sync_with_solutions():
    stale = grading.release(check=True)
    assert not stale, f"notebooks/ is stale; run `make release`: {stale}"


@pytest.mark.parametrize(
    "path", SOLUTION_NOTEBOOKS + RELEASED_NOTEBOOKS, ids=lambda p: str(p.relative_to(grading.REPO))
)
def test_committed_notebook_is_clean_and_valid(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    ids = [cell.get("id") for cell in notebook.cells]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs a unique id"
    grade_ids = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} holds outputs"
        tagged = "raises-exception" in cell.metadata.get("tags", [])
        assert tagged == is_check_cell(cell), f"cell {cell.id}: check cells, and only they, carry raises-exception"
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        grade_ids.append(meta["grade_id"])
        if meta.get("grade"):
            assert meta.get("points", 0) > 0, f"graded cell {meta['grade_id']} gives no points"
        if meta.get("solution") and path.is_relative_to(grading.SOLUTIONS):
            assert "### BEGIN SOLUTION" in cell.source, f"solution cell {meta['grade_id']} has no solution region"
        if path.is_relative_to(grading.NOTEBOOKS):
            assert "BEGIN SOLUTION" not in cell.source and "BEGIN HIDDEN TESTS" not in cell.source
    assert len(set(grade_ids)) == len(grade_ids), "duplicate nbgrader grade ids"
    assert any(cell.metadata.get("nbgrader", {}).get("grade") for cell in notebook.cells), "no graded cell"


# JupyterLab's code editor, in a 1400-px window with the file browser open, shows about 113
# characters of a line before it scrolls sideways (measured in Chromium, JupyterLab 4.6).
CODE_LINE_CHARS = 100


@pytest.mark.parametrize(
    "path", SOLUTION_NOTEBOOKS + RELEASED_NOTEBOOKS, ids=lambda p: str(p.relative_to(grading.REPO))
)
def test_code_cells_fit_the_editor_without_sideways_scrolling(path):
    notebook = nbformat.read(path, as_version=4)
    long_lines = [
        f"cell {cell.id}, line {number}: {len(line)} characters"
        for cell in notebook.cells if cell.cell_type == "code"
        for number, line in enumerate(cell.source.splitlines(), start=1) if len(line) > CODE_LINE_CHARS
    ]
    assert not long_lines, f"code lines over {CODE_LINE_CHARS} characters: {long_lines}"


def test_every_lab_has_a_released_student_copy():
    assert SOLUTION_NOTEBOOKS, "no solution notebooks found"
    missing = [str(student_copy(path)) for path in SOLUTION_NOTEBOOKS if not student_copy(path).exists()]
    assert not missing, f"run `make release`; missing: {missing}"
