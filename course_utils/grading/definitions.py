"""What of a student's solution cell is run at grading time, and the one normal form of an answer.

Only definitions run: imports, functions, classes and assignments. Every other top-level
statement (a call, a loop, a ``get_ipython()`` hook) is skipped and named in the report, so
nothing a cell *does* when it runs in the notebook can change a mark.

``normalized_answer`` is the form in which answers are compared (the copy flag, ``similarity``):
the exercise function's syntax tree without docstrings, comments, formatting, annotations or its
own local names.
"""

from __future__ import annotations

import ast
import builtins
import re

DEFINITIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


_MAGIC = re.compile(r"\s*(%%?[A-Za-z_]|![^=])")  # %time, %%capture, !pip; not a continued `!= x` or `% 2`


def _without_magics(source: str) -> str:
    return "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())


def split_definitions(source: str, filename: str) -> tuple[list[ast.stmt], list[str]]:
    """The top-level definitions of ``source``, and one line per skipped statement.

    IPython magics (lines such as ``%time``, ``%%capture``, ``!pip``) are dropped first. Raises ``SyntaxError``.
    """
    tree = ast.parse(_without_magics(source), filename=filename)
    kept, skipped = [], []
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            kept.append(node)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a bare docstring
            skipped.append(f"line {node.lineno}: {type(node).__name__.lower()} statement not run at grading")
    return kept, skipped


def function_named(source: str, name: str) -> ast.FunctionDef | None:
    """The last top-level ``def name`` in ``source``, or None (also for a syntax error or a cell nested too deep)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, RecursionError):
        return None
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    return found[-1] if found else None


class _Canonical(ast.NodeTransformer):
    """Renames a function's own names to v0, v1, ...: its arguments in signature order, then its variables,
    nested functions and classes and ``except ... as`` names in order of appearance. Drops nested docstrings."""

    def __init__(self, arguments: list[str], local_names: set[str]):
        self.local_names = local_names | set(arguments)
        self.renamed = {name: f"v{position}" for position, name in enumerate(dict.fromkeys(arguments))}

    def _rename(self, name: str) -> str:
        if name not in self.local_names:
            return name
        return self.renamed.setdefault(name, f"v{len(self.renamed)}")

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(self._rename(node.id), node.ctx), node)

    def visit_arg(self, node):
        return ast.copy_location(ast.arg(self._rename(node.arg), None), node)

    def visit_ExceptHandler(self, node):
        node.name = node.name and self._rename(node.name)
        return self.generic_visit(node)

    def _visit_definition(self, node):
        node.name = self._rename(node.name)
        node.body = _strip_docstring(node.body) or [ast.Pass()]
        if hasattr(node, "returns"):
            node.returns = None
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_definition


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        return body[1:]
    return body


def normalized_body(function: ast.FunctionDef) -> str:
    """The function's body with docstrings, annotations and its own names normalized away: equal strings
    mean the same code up to renaming variables, comments and formatting."""
    arguments = [arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)]
    local_names = set()
    for node in ast.walk(ast.Module(function.body, [])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            local_names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)) and node.name:
            local_names.add(node.name)
    local_names -= set(dir(builtins))
    body = ast.Module(_strip_docstring(function.body), [])
    return ast.dump(_Canonical(arguments, local_names).visit(body), annotate_fields=False)


def normalized_answer(source: str, name: str) -> str | None:
    """The normal form of the answer ``def name`` in the cell ``source`` (see ``normalized_body``), or None
    when the cell defines no such function, does not parse, or nests too deep to walk. IPython magics are ignored."""
    function = function_named(_without_magics(source), name)
    try:
        return None if function is None else normalized_body(function)
    except RecursionError:  # an expression thousands of levels deep
        return None
