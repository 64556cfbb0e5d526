"""Which students answered an exercise alike: ``RESULTS/similarity.csv``, for the instructor's eyes only.

The measure. An answer is the exercise function in the normal form of ``definitions.normalized_answer``: its
syntax tree without docstrings, comments, formatting, annotations or its own local names. Two answers with
the same normal form have similarity 1.0. Otherwise their similarity is difflib's ratio 2·M / T between the
token sequences of the two trees (node types, names and constants in order; M tokens matched in order, T
tokens in all). Pairs at ``THRESHOLD`` or above are listed, so a copy with a statement added or changed is
still found.

Answers whose normal form equals the released stub's or the instructor's solution's are left out (the copy
flag of the grade report names those). A cluster of k alike answers is listed as its k(k-1)/2 pairs.
Short exercises have few ways to be written, so a pair there is weaker evidence than a pair on a long one.
Answers over ``LONGEST`` tokens (some 50 times a solution) are only compared for equality.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from difflib import SequenceMatcher
from itertools import combinations
from pathlib import Path

from course_utils.grading.course import NOTEBOOKS, read_notebook
from course_utils.grading.definitions import normalized_answer
from course_utils.grading.exercises import read_lab, student_answers

THRESHOLD = 0.85  # independent correct answers to Lab 1 reach 0.82; a renamed copy with a statement added, 0.88
LONGEST = 5_000  # tokens: longer answers are only compared for equality (difflib's time grows with the product)
COLUMNS = ["lab", "exercise", "student_a", "student_b", "similarity"]
_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[\w.-]+")
_EVERYWHERE = {"Load", "Store", "Del", "Name", "Module"}  # tokens of every answer, left out: they only slow difflib


def tree_tokens(tree: str) -> list[str]:
    """The node types other than ``_EVERYWHERE``, names and constants of a normal form (``normalized_answer``),
    in order."""
    return [token for token in _TOKEN.findall(tree) if token not in _EVERYWHERE]


def _order(tree: str) -> tuple[int, str]:
    return len(tree), tree  # difflib's ratio depends on the order of its sequences: always the same order


def similarity(a: str, b: str) -> float:
    """How alike two normal forms are, in [0, 1]: 1.0 when equal, else difflib's ratio of their token sequences
    (0.0 when one has over ``LONGEST`` tokens)."""
    if a == b:
        return 1.0
    a, b = (tree_tokens(tree) for tree in sorted((a, b), key=_order))
    return 0.0 if max(len(a), len(b)) > LONGEST else SequenceMatcher(None, a, b, autojunk=False).ratio()


def alike_pairs(trees: dict[str, str], threshold: float = THRESHOLD) -> list[tuple[str, str, float]]:
    """``(student_a, student_b, similarity)`` for every pair of ``trees`` (student -> normal form) at least
    ``threshold`` alike, with student_a < student_b; most alike first."""
    students_by_tree = defaultdict(list)
    for student, tree in sorted(trees.items()):
        students_by_tree[tree].append(student)
    ordered = sorted(students_by_tree, key=_order)
    groups = [students_by_tree[tree] for tree in ordered]
    tokens = [tree_tokens(tree) for tree in ordered]
    matcher = SequenceMatcher(autojunk=False)
    pairs = []
    for j, students in enumerate(groups):
        pairs += [(a, b, 1.0) for a, b in combinations(students, 2)]
        if len(tokens[j]) > LONGEST:
            continue
        matcher.set_seq2(tokens[j])  # difflib indexes the second sequence once for all the first ones
        for i in range(j):
            matcher.set_seq1(tokens[i])
            if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
                continue
            if (ratio := matcher.ratio()) >= threshold:
                pairs += [(*sorted((a, b)), ratio) for a in groups[i] for b in students]
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def _released(lab: str, reference_path: Path):
    released = NOTEBOOKS / lab / reference_path.name
    return read_notebook(released) if released.is_file() else None


def class_answers(rows: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    """``(lab, exercise) -> {student: normal form}`` from the graded rows of ``classroom.autograde`` (each with
    ``student``, ``lab``, ``status`` and the notebook's ``path``), without answers equal to the stub or solution."""
    from course_utils.grading.grader import lab_folder, reference_notebook

    labs, answers = {}, defaultdict(dict)
    for row in rows:
        if row.get("status") not in ("graded", "partial") or not row.get("path"):
            continue
        lab = row["lab"]
        if lab not in labs:
            reference_path = next((lab_folder() / lab).glob("*.ipynb"))
            reference = reference_notebook(reference_path)
            spec = read_lab(reference, lab, reference_path.stem)
            released = _released(lab, reference_path)
            stubs = dict(student_answers(released, spec, reference)[0]) if released is not None else {}
            known = {
                exercise.name: {normalized_answer(exercise.solution_source, exercise.name)}
                | {normalized_answer(stubs.get(exercise.name, ""), exercise.name)}
                for exercise in spec.exercises
            }
            labs[lab] = reference, spec, known
        reference, spec, known = labs[lab]
        try:
            submitted = dict(student_answers(read_notebook(Path(row["path"])), spec, reference)[0])
        except ValueError:  # the file changed or vanished since it was graded
            continue
        for exercise in spec.exercises:
            tree = normalized_answer(submitted.get(exercise.name, ""), exercise.name)
            if tree is not None and tree not in known[exercise.name]:
                answers[lab, exercise.name][row["student"]] = tree
    return answers


def write_similarity(path: Path, rows: list[dict], threshold: float = THRESHOLD) -> int:
    """Write ``similarity.csv`` (``COLUMNS``; similarity rounded down to 3 decimals) for the graded ``rows``;
    returns the number of pairs."""
    count = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for (lab, exercise), trees in sorted(class_answers(rows).items()):
            for student_a, student_b, ratio in alike_pairs(trees, threshold):
                writer.writerow([lab, exercise, student_a, student_b, f"{math.floor(ratio * 1000) / 1000:.3f}"])
                count += 1
    return count
