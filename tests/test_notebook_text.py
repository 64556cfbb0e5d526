"""The solution notebooks' prose names the profile of every result it quotes (issue 23).

A markdown cell that quotes measured results, three or more numbers with two or more decimals outside tables, code
and math, either says they come from "our `cpu` run" or cites where they come from (a paper's "et al.", the
course notes' example). Hyperparameters (β₂ = 0.95) and a chance level (0.5) stay below the threshold.
"""

from pathlib import Path

import nbformat
import pytest

from course_utils.quoted_results import LABELLED, quoted_numbers, unprinted_quotes

SOLUTIONS = sorted(Path(__file__).resolve().parents[1].glob("solutions/*/*.ipynb"))
QUOTES_RESULTS = 3  # numbers a cell may quote before it must say where they come from


def unlabelled(markdown: str) -> bool:
    """True when ``markdown`` quotes results without naming the run or the source they come from."""
    return len(quoted_numbers(markdown)) >= QUOTES_RESULTS and not LABELLED.search(markdown)


def test_the_rule_flags_unlabelled_results_and_spares_labelled_ones_and_tables():
    assert unlabelled("The MAE features (0.970) beat random (0.944) and pixels (0.965).")
    assert unlabelled("From the `cpu` run: 0.970, 0.944 and 0.965.")  # the old wording, without "our"
    assert not unlabelled("In our `cpu` run (2 cores) the MAE features (0.970) beat random (0.944) and pixels (0.965).")
    assert not unlabelled("Devlin et al. report 84.20, 84.30 and 84.10.")
    assert not unlabelled("| a | 0.970 |\n| b | 0.944 |\n| c | 0.965 |")
    assert not unlabelled("`print(0.970, 0.944, 0.965)` and $0.25 + 0.50 + 0.75$")
    assert not unlabelled("AdamW with β₂ = 0.95 and weight decay 0.05; chance is 0.5.")
    assert quoted_numbers("0.970, 4.30, 3.8, section 3.1.2, [paper](https://x.org/2.345), arXiv:2005.12833") == [
        "0.970", "4.30"
    ]


def test_quotes_from_our_cpu_run_are_found_in_the_outputs_as_whole_numbers():
    markdown = nbformat.v4.new_markdown_cell(
        "In our `cpu` run the probe reached 0.94 at step 850, 0.950 at the end and 0.31 in a table; "
        "`0.123` is code and [the preprint](https://arxiv.org/abs/2005.12833) a link.", id="read"
    )
    cited = nbformat.v4.new_markdown_cell("Devlin et al. report 0.77, 0.88 and 0.99.", id="cited")
    code = nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="probe 0.942 at step 850\nat the end 0.950\n"),
        nbformat.v4.new_output("display_data", data={"text/html": "<td>0.31</td>"}),
    ])  # fmt: skip
    notebook = nbformat.v4.new_notebook(cells=[markdown, cited, code])
    assert unprinted_quotes(notebook) == ["read: 0.94"], "0.94 is not 0.942; cited numbers are not checked"
    code.outputs[0]["text"] += "0.94\n"
    assert unprinted_quotes(notebook) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.parent.name for path in SOLUTIONS])
def test_markdown_that_quotes_results_names_our_cpu_run_or_its_source(path):
    notebook = nbformat.read(path, as_version=4)
    offending = [cell.id for cell in notebook.cells if cell.cell_type == "markdown" and unlabelled(cell.source)]
    assert not offending, (f"{path.name}: markdown cells {offending} quote results without 'our `cpu` run' or a "
                           "citation; label them, and let the result cell print its own reading")
