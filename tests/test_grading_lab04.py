"""Lab 4 (EHR) graded as the instructor grades it: other correct answers earn full marks, the classic mistakes
earn nothing and are named, and a call into the reference implementation earns nothing.

Each exercise lists its variants; the n-th variants of all exercises share one graded submission (exercises
are graded independently), so the lab is graded as often as the longest list is long.
"""

from __future__ import annotations

import pytest
from submissions import FULL, REFERENCE, grading_tests

pytestmark = pytest.mark.notebook

LAB = "lab04_ehr"

PATIENT_SEQUENCE = '''
import numpy as np
from course_utils.ehr import DAY, EHRSequence


def patient_sequence(times, tokens, visit_gap=DAY):
    """A loop over the events, one visit at a time."""
    times = np.asarray(times, dtype="datetime64[us]")
    births = [time for time, token in zip(times, tokens) if token == "MEDS_BIRTH"]
    events = [(time, token) for time, token in zip(times, tokens) if token != "MEDS_BIRTH"]
    dated = [time for time, _ in events if not np.isnat(time)]
    events = [(dated[0] if np.isnat(time) and dated else time, token) for time, token in events]

    def age(time):
        if not births or not dated:
            return 0
        return min(max(int((time - births[0]) / np.timedelta64(1, "D") / 365.25), 0), 120)

    out = EHRSequence(["[CLS]"], [age(events[0][0])], [0], [0])

    def emit(token, time, visit):
        out.tokens.append(token)
        out.ages.append(age(time))
        out.visits.append(visit)
        out.segments.append(visit % 2)

    visit = 0
    for i, (time, token) in enumerate(events):
        if i > 0 and dated and time - events[i - 1][0] > visit_gap:
            emit("[SEP]", events[i - 1][0], visit)
            visit += 1
        emit(token, time, visit)
    emit("[SEP]", events[-1][0], visit)
    return out
'''

NO_SEP = PATIENT_SEQUENCE.replace('            emit("[SEP]", events[i - 1][0], visit)\n', "").replace(
    '    emit("[SEP]", events[-1][0], visit)\n', ""
)
SEP_AFTER_EVERY_EVENT = NO_SEP.replace(
    "        emit(token, time, visit)\n", '        emit(token, time, visit)\n        emit("[SEP]", time, visit)\n'
)

MASKER = '''
import torch
from course_utils.ehr import MASK_ID, SPECIAL_TOKENS


def mask_events(input_ids, vocab_size, mlm_probability=0.15, generator=None):
    """Bernoulli selection and one decision per position, drawn in another order than mask_tokens draws."""
    shape, device = input_ids.shape, input_ids.device
    random_ids = torch.randint({lowest_draw}, vocab_size, shape, generator=generator, device=device).to(input_ids.dtype)
    decision = torch.rand(shape, generator=generator, device=device)
    chance = torch.full(shape, float(mlm_probability), device=device)
    selected = torch.bernoulli(chance, generator=generator).bool() & ({eligible})
    masked = torch.where(selected & (decision < 0.8), MASK_ID, input_ids)
    masked = torch.where(selected & (decision >= 0.8) & (decision < {random_below}), random_ids, masked)
    return masked, torch.where(selected, input_ids, -100)
'''
CODES = "input_ids >= len(SPECIAL_TOKENS)"

EMBED = """
def embed_events(embedding, input_ids, ages, visits, segments):
    return {body}
"""

HEAD = """
import torch
import torch.nn.functional as F


def outcome_head_loss(hidden, head, labels):
    {body}
"""

# exercise -> {variant: (what it earns: FULL, or 0 points with this in the feedback line, solution cell)}
VARIANTS = {
    "patient_sequence": {
        "a loop over the events": (FULL, PATIENT_SEQUENCE),
        "no [SEP] at the visit ends": ("no [SEP] in your sequence", NO_SEP),
        "[SEP] after every event": ("you put [SEP] after every event", SEP_AFTER_EVERY_EVENT),
        "the reference ehr.patient_sequence": (
            REFERENCE,
            """
from course_utils import ehr


def patient_sequence(times, tokens, visit_gap=ehr.DAY):
    return ehr.patient_sequence(times, tokens, visit_gap)
""",
        ),
    },
    "embed_events": {
        "the four embeddings summed in another order": (
            FULL,
            EMBED.format(
                body="embedding.dropout(embedding.norm(embedding.segment(segments) + embedding.visit(visits) "
                "+ embedding.age(ages) + embedding.code(input_ids)))"
            ),
        ),
        "no age embedding": (
            "the age embedding is missing",
            EMBED.format(
                body="embedding.dropout(embedding.norm(embedding.code(input_ids) + embedding.visit(visits) "
                "+ embedding.segment(segments)))"
            ),
        ),
        "dropout before the LayerNorm": (
            "dropout comes last",
            EMBED.format(
                body="embedding.norm(embedding.dropout(embedding.code(input_ids) + embedding.age(ages) "
                "+ embedding.visit(visits) + embedding.segment(segments)))"
            ),
        ),
        "the module's own forward": (REFERENCE, EMBED.format(body="embedding(input_ids, ages, visits, segments)")),
        "stacked and summed, functional LayerNorm and dropout": (
            FULL,
            """
import torch
import torch.nn.functional as F


def embed_events(embedding, input_ids, ages, visits, segments):
    parts = [embedding.code(input_ids), embedding.age(ages), embedding.visit(visits), embedding.segment(segments)]
    norm = embedding.norm
    normed = F.layer_norm(torch.stack(parts).sum(0), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return F.dropout(normed, embedding.dropout.p, embedding.training)
""",
        ),
    },
    "mask_events": {
        "hand-written Bernoulli 80-10-10, another draw order": (
            FULL,
            MASKER.format(lowest_draw="len(SPECIAL_TOKENS)", eligible=CODES, random_below=0.9),
        ),
        "80% [MASK], 20% random, none kept": (
            "random codes are not 10% of the selected events",
            MASKER.format(lowest_draw="len(SPECIAL_TOKENS)", eligible=CODES, random_below=1.0),
        ),
        "selects [CLS], [SEP] and [PAD] too": (
            "you selected a [PAD] position",
            MASKER.format(lowest_draw="len(SPECIAL_TOKENS)", eligible="input_ids != MASK_ID", random_below=0.9),
        ),
        "random replacements from the whole vocabulary": (
            "a random replacement drew a special token",
            MASKER.format(lowest_draw=0, eligible=CODES, random_below=0.9),
        ),
        "the reference behrt.mask_events": (REFERENCE, "from course_utils.models.behrt import mask_events\n"),
    },
    "outcome_head_loss": {
        "a stable BCE by hand, labels cast to the logits' dtype": (
            FULL,
            HEAD.format(
                body="logits = head(hidden[:, 0])[:, 0]\n"
                "    return (F.softplus(logits) - labels.to(logits.dtype) * logits).mean(), logits"
            ),
        ),
        "labels via type_as, logits via view(-1)": (
            FULL,
            HEAD.format(
                body="logits = head(hidden[:, 0]).view(-1)\n"
                "    return F.binary_cross_entropy_with_logits(logits, labels.type_as(logits)), logits"
            ),
        ),
        "the mean over positions instead of [CLS]": (
            "you pooled over positions other than [CLS]",
            HEAD.format(
                body="logits = head(hidden.mean(dim=1)).squeeze(-1)\n"
                "    return F.binary_cross_entropy_with_logits(logits, labels.float()), logits"
            ),
        ),
        "a sigmoid before binary_cross_entropy_with_logits": (
            "you applied a sigmoid before binary_cross_entropy_with_logits",
            HEAD.format(
                body="logits = head(hidden[:, 0]).squeeze(-1)\n"
                "    return F.binary_cross_entropy_with_logits(torch.sigmoid(logits), labels.float()), logits"
            ),
        ),
        "the reference behrt.outcome_head_loss": (
            REFERENCE,
            HEAD.format(
                body="from course_utils.models import behrt\n\n    return behrt.outcome_head_loss(hidden, head, labels)"
            ),
        ),
    },
}


(
    graded,
    test_a_correct_alternative_earns_full_marks,
    test_a_classic_mistake_earns_zero_and_is_named,
    test_calling_the_reference_implementation_earns_zero,
) = grading_tests(LAB, VARIANTS)
