"""The results that the labs' prose quotes, and whether an executed run printed them.

A markdown cell quotes a measured result when its prose (code, math and table rows left out) holds a
number with two or more decimals: 0.970 or 4.30, not 3.8 or section 3.1.2. Such a cell must say where the
number comes from: "our `cpu` run", or a citation. ``unprinted_quotes`` checks the first kind against an
executed `cpu` run, so that prose written for one run does not outlive the code that printed it.
"""

from __future__ import annotations

import re

import nbformat

MEASURED = re.compile(r"(?<![\w.])\d+\.\d{2,}(?!\w|\.\d)")
OUR_CPU_RUN = re.compile(r"our `cpu` run")
LABELLED = re.compile(rf"{OUR_CPU_RUN.pattern}|et al\.|course notes'")  # our run, a paper, or the course notes
OUTPUT_MIMES = ("text/plain", "text/html")


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers with two or more decimals in ``markdown``'s prose (code, math, link targets, arXiv ids and
    table rows left out)."""
    prose = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|arXiv:\S+", "", markdown, flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.lstrip().startswith("|"))
    return MEASURED.findall(prose)


def printed_text(notebook: nbformat.NotebookNode) -> str:
    """Everything the executed ``notebook``'s code cells printed or displayed as text, in one string."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(output.get("text", ""))
            parts.extend(output.get("data", {}).get(mime, "") for mime in OUTPUT_MIMES)
    return "\n".join("".join(part) if isinstance(part, list) else part for part in parts)


def unprinted_quotes(notebook: nbformat.NotebookNode) -> list[str]:
    """``"<cell id>: <number>"`` for every number that a markdown cell quotes from "our `cpu` run" and that no
    output of the executed ``notebook`` prints (as a whole number: 0.94 is not found in 0.942)."""
    printed = printed_text(notebook)
    missing = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown" or not OUR_CPU_RUN.search(cell.source):
            continue
        for number in dict.fromkeys(quoted_numbers(cell.source)):
            if not re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", printed):
                missing.append(f"{cell.get('id', '?')}: {number}")
    return missing
