"""What of a student's solution cell is run at grading time, and how alike two solutions are.

Only definitions run: imports, functions, classes and assignments. Every other top-level
statement (a call, a loop, a ``get_ipython()`` hook) is skipped and named in the report, so
nothing a cell *does* when it runs in the notebook can change a mark.
"""

from __future__ import annotations

import ast
import builtins

DEFINITIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def split_definitions(source: str, filename: str) -> tuple[list[ast.stmt], list[str]]:
    """The top-level definitions of ``source``, and one line per skipped statement.

    IPython magics (lines starting with ``%`` or ``!``) are dropped first. Raises ``SyntaxError``.
    """
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    tree = ast.parse("\n".join(lines), filename=filename)
    kept, skipped = [], []
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            kept.append(node)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a bare docstring
            skipped.append(f"line {node.lineno}: {type(node).__name__.lower()} statement not run at grading")
    return kept, skipped


def function_named(source: str, name: str) -> ast.FunctionDef | None:
    """The last top-level ``def name`` in ``source``, or None (also for a syntax error)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    return found[-1] if found else None


class _Canonical(ast.NodeTransformer):
    """Renames a function's own arguments and local variables to v0, v1, ... in order of appearance."""

    def __init__(self, local_names: set[str]):
        self.local_names, self.renamed = local_names, {}

    def _rename(self, name: str) -> str:
        if name not in self.local_names:
            return name
        return self.renamed.setdefault(name, f"v{len(self.renamed)}")

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(self._rename(node.id), node.ctx), node)

    def visit_arg(self, node):
        return ast.copy_location(ast.arg(self._rename(node.arg), None), node)


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        return body[1:]
    return body


def normalized_body(function: ast.FunctionDef) -> str:
    """The function's body with docstring, annotations and local names normalized away: equal strings
    mean the same code up to renaming variables, comments and formatting."""
    local_names = {arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            local_names.add(node.id)
    local_names -= set(dir(builtins))
    body = ast.Module(_strip_docstring(function.body), [])
    return ast.dump(_Canonical(local_names).visit(body), annotate_fields=False)
