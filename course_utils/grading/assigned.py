"""What a student copy with assigned labs withholds: the answer key of each assigned lab, shipped compiled.

A graded lab's exercise references (the functions its checks module lists in ``REFERENCES``, and the private
helpers they call) would hand out its answers in a student copy. ``withhold(copy, labs)``
replaces, in the copy, each module that holds such a reference by sourceless bytecode (``module.pyc`` where
``module.py`` was, which Python imports as it would the source) and a readable stub ``module.pyi``: the
module's source with the withheld bodies cut to ``...``, every other line at its number, so that tracebacks
and ``inspect.getsource`` read their lines from it. The labs' checks modules, which rebuild the answers
to compare against, ship as bytecode alone. Everything still runs: later labs import the references, the
checks call them, ``make check`` grades with them. Bytecode runs only on the Python version that wrote it.
"""

from __future__ import annotations

import ast
import importlib.util
import py_compile
import re
import sys
from pathlib import Path

from course_utils.grading.course import REPO, SOLUTIONS, assignments, read_notebook
from course_utils.grading.exercises import read_lab
from course_utils.grading.grader import checks_modules, forbidden_references

ELIDED = "...  # withheld while its lab is assigned: the code runs compiled, from {name}.pyc"
# Appended to a module before it is compiled: tracebacks and ``inspect.getsource`` then read its lines from the
# stub, whose line numbers are the source's (a withheld body reads as ``...`` and blank lines).
SHOW_STUB = """

def _show_stub():
    import linecache
    import os

    stub = os.path.splitext(__file__)[0] + ".pyi"
    try:
        with open(stub) as handle:
            lines = handle.readlines()
    except OSError:  # the stub was removed: the module still runs, without source lines
        return
    linecache.cache[{filename!r}] = (sum(map(len, lines)), None, lines, stub)


_show_stub()
del _show_stub
"""


def check_labs(labs: list[str]) -> list[str]:
    """``labs`` as given, after checking that each is a lab folder of ``solutions/``."""
    unknown = [lab for lab in labs if lab not in assignments()]
    if unknown or not labs:
        raise ValueError(f"--assign {','.join(labs)}: expected lab folders among {','.join(assignments())}")
    return labs


def _lab(lab: str):
    notebook = sorted((SOLUTIONS / lab).glob("*.ipynb"))[0]
    return read_lab(read_notebook(notebook), lab, notebook.stem)


def withheld(labs: list[str]) -> tuple[dict[Path, set[str]], set[Path]]:
    """``({module file: qualified names of its withheld functions}, {checks module files})`` for ``labs``,
    paths relative to the repository."""
    references: dict[Path, set[str]] = {}
    checks: set[Path] = set()
    for lab in check_labs(labs):
        spec = _lab(lab)
        checks.update(_file(module) for module in checks_modules(spec))
        for targets in forbidden_references(spec).values():
            for target in targets:
                module, _, qualname = target.partition(":")
                if module.split(".")[0] == "course_utils":
                    references.setdefault(_file(module), set()).add(qualname)
    return references, checks


def _file(module: str) -> Path:
    path = Path(importlib.util.find_spec(module).origin).relative_to(REPO)
    if path.name == "__init__.py":
        raise ValueError(f"{module} is a package: keep exercise references and checks in modules, not __init__.py")
    return path


def _functions(body: list[ast.stmt], prefix: str = ""):
    """``(qualified name, node)`` of every function defined in ``body`` and in its classes."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def _mentions(node: ast.AST) -> set[str]:
    """The names and attribute names that ``node`` mentions."""
    walked = list(ast.walk(node))
    return {n.id for n in walked if isinstance(n, ast.Name)} | {n.attr for n in walked if isinstance(n, ast.Attribute)}


def serving(tree: ast.Module, references: set[str]) -> set[str]:
    """``references`` and the private functions of ``tree`` that they call, directly or through one another
    (a private method by the attribute name it is called through)."""
    functions = dict(_functions(tree.body))
    unknown = references - set(functions)
    if unknown:
        raise ValueError(f"REFERENCES names {sorted(unknown)}, which the module does not define as functions")
    private: dict[str, list[str]] = {}
    for qualname, node in functions.items():
        if node.name.startswith("_") and not node.name.endswith("__"):
            private.setdefault(node.name, []).append(qualname)
    hidden, unread = set(references), list(references)
    while unread:
        for name in _mentions(functions[unread.pop()]):
            for helper in set(private.get(name, ())) - hidden:
                hidden.add(helper)
                unread.append(helper)
    return hidden


def stub(source: str, hidden: set[str], name: str) -> str:
    """``source`` with the bodies of the ``hidden`` functions (after their docstrings) cut to one ``...`` line and
    blank lines, so that every other line keeps its number; comments inside them go too."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    cuts = []
    for qualname, node in _functions(tree.body):
        if qualname not in hidden:
            continue
        docstring = isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        statements = node.body[1:] if docstring else node.body
        if not statements:
            continue
        first, column = statements[0].lineno - 1, statements[0].col_offset
        if lines[first][:column].strip():
            raise ValueError(f"{name}.py: {qualname} starts its body on a line it shares; give it lines of its own")
        while first > node.lineno and (not lines[first - 1].strip() or lines[first - 1].lstrip().startswith("#")):
            first -= 1  # comments and blank lines before the first statement go with the body
        cuts.append((first, node.end_lineno, f"{' ' * column}{ELIDED.format(name=name)}\n"))
    for first, end, line in cuts:
        lines[first:end] = [line] + ["\n"] * (end - first - 1)
    return "".join(lines)


def withhold(copy: Path, labs: list[str]) -> None:
    """Replace, in the student copy at ``copy``, the sources that answer ``labs`` (see the module docstring)."""
    references, checks = withheld(labs)
    for relative in sorted(set(references) | checks):
        source, shown = (REPO / relative).read_text(), relative
        if relative in references:
            hidden = serving(ast.parse(source), references[relative])
            shown = relative.with_suffix(".pyi")
            (copy / shown).write_text(stub(source, hidden, relative.stem))
            (copy / relative).write_text(source + SHOW_STUB.format(filename=str(shown)))
        py_compile.compile(
            str(copy / relative),
            cfile=str((copy / relative).with_suffix(".pyc")),
            dfile=str(shown),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        (copy / relative).unlink()
    _pin_python(copy)


def _pin_python(copy: Path) -> None:
    """Bytecode runs only on the Python version that wrote it: the copy's install files ask for that version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name, line, pinned in (
        ("pyproject.toml", r'^requires-python = ".*"$', f'requires-python = "=={version}.*"'),
        ("environment.yml", r"^(\s*- python)=[\d.]+$", rf"\1={version}"),
    ):
        text, count = re.subn(line, pinned, (copy / name).read_text(), count=1, flags=re.M)
        if count != 1:
            raise ValueError(f"{name} names no Python version to pin to {version}; expected a line like {line}")
        (copy / name).write_text(text)
