"""A graded notebook: one row per test cell, with the points and the reason for any lost point."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CellGrade:
    """One graded cell: its nbgrader id, points, why points were lost (empty if none), and flags for the instructor."""

    cell_id: str
    score: float
    max_score: float
    message: str = ""
    flags: list[str] = field(default_factory=list)
    incident: str = ""  # a limit hit or a process lost while grading this cell, for the class report

    @property
    def verdict(self) -> str:
        if self.score >= self.max_score:
            return "passed"
        return self.message or "failed"


@dataclass
class GradeReport:
    """The grade of one notebook, and notes on how it was graded (sandbox, repairs, skipped statements)."""

    assignment: str
    notebook: str
    cells: list[CellGrade] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hidden_tests: bool = True

    @property
    def score(self) -> float:
        return sum(cell.score for cell in self.cells)

    @property
    def max_score(self) -> float:
        return sum(cell.max_score for cell in self.cells)

    def table(self) -> str:
        """A plain-text table: cell id, points earned/possible, verdict; then flags and notes."""
        width = max([len("cell"), *(len(cell.cell_id) for cell in self.cells)])
        rule = "-" * (width + 2 + 9 + 2 + 40)
        lines = [f"{self.assignment}/{self.notebook}.ipynb", f"{'cell':<{width}}  {'points':>9}  result", rule]
        for cell in self.cells:
            points = f"{cell.score:g} / {cell.max_score:g}"
            lines.append(f"{cell.cell_id:<{width}}  {points:>9}  {cell.verdict}")
            lines += [f"{'':<{width}}  {'':>9}  flag: {flag}" for flag in cell.flags]
        lines.append(rule)
        lines.append(f"{'total':<{width}}  {f'{self.score:g} / {self.max_score:g}':>9}")
        if not self.hidden_tests:
            lines.append("visible checks only: the hidden tests run at the instructor's end")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)
