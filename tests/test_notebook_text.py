"""The solution notebooks' prose names the profile of every result it quotes (issue 23).

A markdown cell that quotes measured results, three or more numbers with two or more decimals outside tables, code
and math, either says they come from "our `cpu` run" or cites where they come from (a paper's "et al.", the
course notes' example). Hyperparameters (β₂ = 0.95) and a chance level (0.5) stay below the threshold.
"""

import re
from pathlib import Path

import nbformat
import pytest

SOLUTIONS = sorted(Path(__file__).resolve().parents[1].glob("solutions/*/*.ipynb"))
MEASURED = re.compile(r"(?<![\w.])\d+\.\d{2,}(?!\w|\.\d)")  # 0.970, 4.30: not 3.8, not section 3.1.2
LABELLED = re.compile(r"our `cpu` run|et al\.|course notes'")
QUOTES_RESULTS = 3  # numbers a cell may quote before it must say where they come from


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers with two or more decimals in ``markdown``'s prose (code, math and table rows left out)."""
    prose = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", "", markdown, flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.lstrip().startswith("|"))
    return MEASURED.findall(prose)


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


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.parent.name for path in SOLUTIONS])
def test_markdown_that_quotes_results_names_our_cpu_run_or_its_source(path):
    notebook = nbformat.read(path, as_version=4)
    offending = [cell.id for cell in notebook.cells if cell.cell_type == "markdown" and unlabelled(cell.source)]
    assert not offending, (f"{path.name}: markdown cells {offending} quote results without 'our `cpu` run' or a "
                           "citation; label them, and let the result cell print its own reading")
