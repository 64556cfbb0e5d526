"""The grade report's copy flag: an answer that is a course reference after renaming, or a near-copy of one,
is named for the instructor (never marked down); an answer written another way is not."""

from __future__ import annotations

import inspect
import re
import textwrap

from course_utils import contrastive
from course_utils.grading.grader import _copy_flag

REFERENCE = "course_utils.contrastive:nt_xent_loss"
RENAMES = {"z1": "left", "z2": "right", "logits": "scores", "positives": "targets", "B": "n", "self_pairs": "diagonal"}


def renamed_reference() -> str:
    """``nt_xent_loss``'s source without its docstring, every local name changed."""
    source = re.sub(r'\s+"""(.|\n)*?"""', "", textwrap.dedent(inspect.getsource(contrastive.nt_xent_loss)), count=1)
    for old, new in RENAMES.items():
        source = re.sub(rf"\b{old}\b", new, source)
    assert "z1" not in source and '"""' not in source
    return source


def flag(answer: str) -> str:
    return _copy_flag(answer, "nt_xent_loss", "", [REFERENCE])


def test_a_reference_copied_with_its_names_changed_is_flagged_as_the_same_syntax_tree():
    assert flag(renamed_reference()).startswith(f"same syntax tree as {REFERENCE}")


def test_a_near_copy_of_a_reference_is_flagged_with_how_alike_it_is():
    near = renamed_reference().replace('float("-inf")', "-1e9")
    near = near.replace("    return F.cross_entropy", "    scores = scores.float()\n    return F.cross_entropy")
    message = rf"(\d+)% alike in structure to {REFERENCE} \(a near-copy\?\); not marked down automatically"
    alike = re.fullmatch(message, flag(near))
    assert alike and 90 <= int(alike.group(1)) < 100


def test_an_answer_written_another_way_is_not_flagged():
    loop = """
def nt_xent_loss(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    similarities = torch.exp(z @ z.T / temperature)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        total = total - torch.log(similarities[i, j] / (similarities[i].sum() - similarities[i, i]))
    return total / (2 * n)
"""
    assert flag(loop) == ""
