"""``run-labs`` writes as it goes, and ``COURSE_MAX_STEPS`` caps every training loop."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from course_utils.device import max_steps
from course_utils.labs import lab_notebooks, run_labs
from course_utils.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def write_lab(solutions: Path, name: str, *sources: str) -> None:
    folder = solutions / name
    folder.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nbformat.write(notebook, folder / f"{name}.ipynb")


def test_max_steps_reads_course_max_steps(monkeypatch):
    monkeypatch.delenv("COURSE_MAX_STEPS", raising=False)
    assert max_steps() is None
    monkeypatch.setenv("COURSE_MAX_STEPS", "3")
    assert max_steps() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("COURSE_MAX_STEPS", bad)
        with pytest.raises(ValueError, match="COURSE_MAX_STEPS"):
            max_steps()


def test_fit_stops_at_course_max_steps_and_still_evaluates_at_its_last_step(monkeypatch):
    monkeypatch.setenv("COURSE_MAX_STEPS", "3")
    model = nn.Linear(2, 1)
    batches = [(torch.randn(4, 2), torch.randn(4, 1))]
    config = TrainConfig(steps=50, live_plot=False, eval_every=10)
    history = fit(
        model, batches, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), config, torch.device("cpu"), lambda m: {"s": 1.0}
    )
    assert history.steps == [1, 2, 3]
    assert [evaluation["step"] for evaluation in history.evaluations] == [3]


def test_lab_notebooks_are_in_course_order_and_unknown_labs_are_named(tmp_path):
    for name in ("lab02_b", "lab01_a"):
        write_lab(tmp_path, name, "1")
    assert [path.parent.name for path in lab_notebooks(tmp_path)] == ["lab01_a", "lab02_b"]
    with pytest.raises(ValueError, match="lab09"):
        lab_notebooks(tmp_path, ["lab09"])
    with pytest.raises(ValueError, match="profile"):
        run_labs("tpu", tmp_path / "out", solutions=tmp_path)


def test_run_labs_writes_each_notebook_and_a_summary_line_with_failing_cells(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    write_lab(tmp_path, "lab01_a", "import os\nprint(os.environ['COURSE_PROFILE'], os.environ['COURSE_MAX_STEPS'])")
    write_lab(tmp_path, "lab02_b", "print('fine')", "raise RuntimeError('broken cell')", "print('goes on')")
    out = tmp_path / "out"
    monkeypatch.delenv("COURSE_MAX_STEPS", raising=False)
    summaries = run_labs("cpu", out, max_steps=2, solutions=tmp_path)
    assert os.environ["COURSE_PROFILE"] == "ci" and "COURSE_MAX_STEPS" not in os.environ, "only the kernels see them"
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert lines == summaries and [line["lab"] for line in lines] == ["lab01_a", "lab02_b"]
    assert lines[0]["failing_cells"] == [] and lines[0]["device"] == "cpu" and lines[0]["peak_host_memory_gb"] > 0
    first = nbformat.read(out / "lab01_a.ipynb", as_version=4)
    assert first.cells[0].outputs[0]["text"].strip() == "cpu 2", "the kernel sees the profile and the step cap"
    second = nbformat.read(out / "lab02_b.ipynb", as_version=4)
    assert lines[1]["failing_cells"] == [second.cells[1].id]
    assert second.cells[2].outputs[0]["text"].strip() == "goes on", "a failing cell does not stop the lab"
    assert len(second.cells) == 3, "the resource probe is not written into the lab's notebook"
    assert "quotes_not_printed" not in lines[0], "a capped run prints other numbers than the prose quotes"


def test_a_full_cpu_run_lists_the_numbers_its_prose_quotes_but_no_cell_printed(tmp_path):
    folder = tmp_path / "lab01_a"
    folder.mkdir()
    prose = nbformat.v4.new_markdown_cell("In our `cpu` run it printed 0.25 and 0.75.", id="read")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(0.25)"), prose])
    nbformat.write(notebook, folder / "lab01_a.ipynb")
    (summary,) = run_labs("cpu", tmp_path / "out", solutions=tmp_path)
    assert summary["quotes_not_printed"] == ["read: 0.75"]


def test_an_interrupted_run_leaves_the_finished_labs_and_the_cells_run_so_far(tmp_path):
    write_lab(tmp_path, "lab01_a", "print('done')")
    write_lab(tmp_path, "lab02_b", "print('started')", "import time\ntime.sleep(600)")
    out = tmp_path / "out"
    code = f"from course_utils.labs import run_labs; run_labs('ci', {str(out)!r}, solutions={str(tmp_path)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            partial = out / "lab02_b.ipynb"
            if partial.exists() and nbformat.read(partial, as_version=4).cells[0].get("outputs"):
                break
            time.sleep(0.5)
        else:
            pytest.fail("lab02_b's first cell was never written")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the machine dies: the runner and its kernel with it
        process.wait()
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert [line["lab"] for line in lines] == ["lab01_a"]
    assert nbformat.read(out / "lab01_a.ipynb", as_version=4).cells[0].outputs[0]["text"].strip() == "done"
    assert nbformat.read(out / "lab02_b.ipynb", as_version=4).cells[0].outputs[0]["text"].strip() == "started"
