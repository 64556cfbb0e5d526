"""Checks for Lab 4 (EHR): patient sequences, the BEHRT embedding sum, event masking, the outcome head.

Random results are judged by counts: a count must lie between exact binomial quantiles that a correct
function misses with probability at most ``FALSE_FAILURE`` (over seeds; ``course_utils.checks.FALSE_FAILURE``,
the course's one policy), so a test cell running k such checks fails correct work with probability at most
k * ``FALSE_FAILURE`` (union bound).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from course_utils.checks import (
    expect,
    expect_binomial,
    expect_close,
    expect_input_untouched,
    expect_tensor,
    gradients,
    passed,
)
from course_utils.ehr import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID, patient_sequence
from course_utils.masking import IGNORE_INDEX
from course_utils.models.behrt import BehrtConfig, BehrtEmbedding, outcome_head_loss


def example_patient() -> tuple[np.ndarray, list[str]]:
    """A static sex row, a birth, a visit with two same-time diagnoses and a lab, then two one-event visits."""
    times = np.array(
        [
            "NaT",
            "1960-03-01T00:00",
            "2015-06-01T09:00",
            "2015-06-01T09:00",
            "2015-06-01T10:00",
            "2016-01-10T08:30",
            "2017-03-05T14:00",
        ],
        dtype="datetime64[us]",
    )
    tokens = [
        "GENDER//F",
        "MEDS_BIRTH",
        "ICD10CM//E11.9",
        "ICD10CM//I10",
        "LOINC//4548-4//Q3",
        "ATC//A10BA02",
        "LOINC//2160-0",
    ]
    return times, tokens


def check_patient_sequence(patient_sequence_fn) -> None:
    """Exercise 1: events -> [CLS] visit [SEP] visit [SEP], with ages, visit indices and segments."""
    times, tokens = example_patient()
    result = patient_sequence_fn(times.copy(), list(tokens))
    expected = patient_sequence(times, tokens)
    expect(len(result) == 4, "return four lists: tokens, ages, visits, segments (an EHRSequence)")
    got_tokens, ages, visits, segments = (list(part) for part in result)
    expect(
        all(len(part) == len(got_tokens) for part in (ages, visits, segments)),
        "tokens, ages, visits and segments must have one entry per token",
    )
    expect(got_tokens[:1] == ["[CLS]"], "your sequence does not start with [CLS]")
    expect(
        "MEDS_BIRTH" not in got_tokens,
        "MEDS_BIRTH appears as a token: it only sets the ages, it is not an event of the timeline",
    )
    seps = got_tokens.count("[SEP]")
    expect(seps > 0, "no [SEP] in your sequence: every visit ends with [SEP]")
    expect(seps != 1, "one [SEP] for three visits: every visit ends with its own [SEP]")
    expect(seps != 6, "you put [SEP] after every event; it goes after every *visit*")
    expect(seps != 2 or got_tokens[-1] == "[SEP]", "the last visit needs its closing [SEP] too")
    expect(
        seps != 4,
        "you split one visit (events an hour apart, or the static row) into separate visits",
        "a new visit starts only where the gap to the previous dated event exceeds visit_gap; "
        "static rows join the first visit",
    )
    expect(
        got_tokens.index("GENDER//F") < got_tokens.index("[SEP]"), "static events (time NaT) belong to the first visit"
    )
    expect(got_tokens == expected.tokens, f"tokens differ: expected {expected.tokens}, got {got_tokens}")
    passed("[CLS], visits and [SEP] in the right places")
    expect(max(ages) < 200, "ages look like days: count whole years, (time - birth) / 365.25 days")
    expect(ages[1] != 0, "ages must be counted from MEDS_BIRTH, not from the patient's first event")
    expect(
        ages == expected.ages,
        f"ages differ: expected {expected.ages}, got {ages}",
        "[CLS] takes the first event's age; [SEP] the age of its visit",
    )
    passed("ages in whole years since birth")
    expect(visits[0] == 0 and visits[1] == 0, "number visits from 0: [CLS] and the first visit share index 0")
    expect(
        visits == expected.visits,
        f"visit indices differ: expected {expected.visits}, got {visits}",
        "[SEP] belongs to the visit it closes",
    )
    expect(segments != visits, "segments are not the visit index: they alternate 0, 1, 0, 1 (visit % 2)")
    expect(segments == expected.segments, f"segments differ: expected {expected.segments}, got {segments}")
    passed("visit indices and alternating segments")


def compare_patient_sequence(patient_sequence_fn, times: np.ndarray, tokens: list[str], visit_gap=None) -> None:
    """The student's sequence equals the reference on one patient (for hidden tests); ``visit_gap`` is passed
    only when given, so the default is tested too."""
    gap = () if visit_gap is None else (visit_gap,)
    got, expected = patient_sequence_fn(times.copy(), list(tokens), *gap), patient_sequence(times, tokens, *gap)
    expect(
        tuple(list(part) for part in got) == tuple(expected),
        f"your sequence differs from the reference for tokens {tokens}"
        + ("" if visit_gap is None else f" with visit_gap={visit_gap}"),
    )


def _embedding(seed: int = 0, dropout: float = 0.0) -> tuple[BehrtEmbedding, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    module = BehrtEmbedding(BehrtConfig(vocab_size=20, hidden_size=16, num_heads=4, max_len=12, dropout=dropout))
    nn.init.normal_(module.norm.weight, 1.0, 0.2)
    nn.init.normal_(module.norm.bias, 0.0, 0.2)
    batch = {
        "input_ids": torch.tensor([[CLS_ID, 7, 9, SEP_ID, 11, SEP_ID], [CLS_ID, 8, SEP_ID, PAD_ID, PAD_ID, PAD_ID]]),
        "ages": torch.tensor([[50, 50, 50, 50, 53, 53], [70, 70, 70, 0, 0, 0]]),
        "visits": torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]),
        "segments": torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]),
    }
    return module, batch


def check_embed_events(embed_events) -> None:
    """Exercise 2: code + age + visit + segment, summed, then LayerNorm and dropout."""
    module, batch = _embedding()
    module.eval()
    out = expect_input_untouched(
        embed_events, module, batch["input_ids"], batch["ages"], batch["visits"], batch["segments"]
    )
    expect(isinstance(out, torch.Tensor), f"return a tensor [B, L, D], got {type(out).__name__}")
    expect(tuple(out.shape) != (2, 6, 64), "you concatenated the four embeddings; BEHRT sums them (the width stays D)")
    expect_tensor(out, "the embedding", shape=(2, 6, 16))
    parts = {
        "code": module.code(batch["input_ids"]),
        "age": module.age(batch["ages"]),
        "visit": module.visit(batch["visits"]),
        "segment": module.segment(batch["segments"]),
    }
    total = sum(parts.values())
    with torch.no_grad():
        expect(
            not torch.allclose(out, total, atol=1e-5),
            "you returned the raw sum: apply module.norm (LayerNorm) and module.dropout",
        )
        for name, part in parts.items():
            expect(
                not torch.allclose(out, module.norm(total - part), atol=1e-5),
                f"the {name} embedding is missing from the sum",
            )
        per_term = sum(module.norm(part) for part in parts.values())
        expect(
            not torch.allclose(out, per_term, atol=1e-5),
            "you normalised each embedding separately; LayerNorm goes once, after the sum",
        )
    expect_close(
        out,
        module(batch["input_ids"], batch["ages"], batch["visits"], batch["segments"]),
        "your embedding differs from LayerNorm(code + age + visit + segment)",
    )
    passed("LayerNorm(code + age + visit + segment)")

    module, batch = _embedding(dropout=0.5)
    module.train()
    inputs = (batch["input_ids"], batch["ages"], batch["visits"], batch["segments"])
    torch.manual_seed(1)
    out = embed_events(module, *inputs)
    with torch.no_grad():
        summed = module.code(inputs[0]) + module.age(inputs[1]) + module.visit(inputs[2]) + module.segment(inputs[3])
        torch.manual_seed(1)
        expected = module.dropout(module.norm(summed))
        torch.manual_seed(1)
        dropout_first = module.norm(module.dropout(summed))
        no_dropout = module.norm(summed)
    expect_tensor(out, "the embedding in training mode", shape=(2, 6, 16))
    expect(not torch.allclose(out, dropout_first, atol=1e-5), "dropout comes last, after the LayerNorm")
    expect(
        not torch.allclose(out, no_dropout, atol=1e-5),
        "dropout is not applied in training mode: finish with module.dropout(...)",
    )
    expect_close(out, expected, "in training mode your embedding differs from dropout(LayerNorm(sum))")
    passed("dropout last, in training mode")


def event_batch(rows: int = 64, length: int = 40, vocab_size: int = 30, seed: int = 0) -> torch.Tensor:
    """``[rows, length]`` ids: [CLS], three visits of codes each closed by [SEP] (the last of varying length),
    then [PAD]. Drawn with numpy, so no torch generator a masker is given can replay the codes."""
    codes = np.random.default_rng(seed).integers(len(SPECIAL_TOKENS), vocab_size, (rows, length))
    ids = torch.from_numpy(codes).long()
    ids[:, 0] = CLS_ID
    ids[:, length // 4] = SEP_ID
    ids[:, length // 2] = SEP_ID
    for row in range(rows):
        last_sep = length // 2 + 2 + row % (length - length // 2 - 2)
        ids[row, last_sep] = SEP_ID
        ids[row, last_sep + 1 :] = PAD_ID
    return ids


def expect_share(count: int, n: int, p_low: float, p_high: float | None, misconception: str, hint: str = "") -> None:
    """``count`` of ``n`` is a share ``p`` in ``[p_low, p_high]``: ``expect_binomial`` (the name the lab's hidden
    tests use); fails correct work with probability at most ``FALSE_FAILURE``."""
    expect_binomial(count, n, p_low, p_high, misconception, hint, what="a correct masker")


def expect_80_10_10(masked: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, vocab_size: int) -> None:
    """The selected events (labels != -100) became [MASK] 80%, another code 10%, stayed 10%; random draws are codes.

    Three ``expect_share`` checks: a false-failure rate of at most 3 * ``FALSE_FAILURE``."""
    selected = labels != IGNORE_INDEX
    shown, original = masked[selected], ids[selected]
    n, codes = len(shown), vocab_size - len(SPECIAL_TOKENS)
    is_random = (shown != MASK_ID) & (shown != original)
    drawn = shown[is_random]
    expect(
        not torch.isin(drawn, torch.tensor([PAD_ID, CLS_ID, SEP_ID, UNK_ID])).any(),
        "a random replacement drew a special token: draw only real codes (ids >= 5)",
    )
    expect(bool((drawn < vocab_size).all()), "a random replacement is not an id of the vocabulary (ids < vocab_size)")
    expect_share(
        int((shown == MASK_ID).sum()),
        n,
        0.8,
        None,
        "[MASK] is not 80% of the selected events",
        "one decision per selected event: 80% [MASK], 10% a random code, 10% unchanged",
    )
    # A random code equals the original with chance 1/codes when drawn uniformly (0 when the draw avoids it),
    # so the replaced share lies in 10% * [1 - 1/codes, 1] and the unchanged share in 10% + 10% * [0, 1/codes].
    expect_share(
        int(is_random.sum()),
        n,
        0.1 * (1 - 1 / codes),
        0.1,
        "random codes are not 10% of the selected events",
        "10% of the selected events become a random code, not 20% and not 0%",
    )
    expect_share(
        int((shown == original).sum()),
        n,
        0.1,
        0.1 + 0.1 / codes,
        "unchanged events are not 10% of the selected events",
        "10% of the selected events keep their original code",
    )


def check_mask_events(mask_events) -> None:
    """Exercise 3: BERT masking that never touches [PAD], [CLS] or [SEP] and never draws a special token.

    Four ``expect_share`` checks: a correct masker fails this check with probability at most 4 * ``FALSE_FAILURE``
    (over seeds).
    """
    vocab_size = 30
    ids = event_batch(vocab_size=vocab_size)
    structural = (ids == PAD_ID) | (ids == CLS_ID) | (ids == SEP_ID)
    masked, labels = expect_input_untouched(mask_events, ids, vocab_size, 1.0, torch.Generator().manual_seed(0))
    expect_tensor(masked, "masked_ids", shape=ids.shape, dtype=ids.dtype)
    expect_tensor(labels, "labels", shape=ids.shape)
    selected = labels != IGNORE_INDEX
    expect(
        not selected[ids == PAD_ID].any(),
        "you selected a [PAD] position: padding is not an event",
        "pass every special id to the masker",
    )
    expect(
        not selected[ids == CLS_ID].any(),
        "you selected the [CLS] position: it summarises the patient, it is not an event",
    )
    expect(
        not selected[ids == SEP_ID].any(), "you selected a [SEP] position: visit boundaries are structure, not events"
    )
    expect(selected[~structural].all(), "with mlm_probability=1 every code position must be selected")
    expect(
        torch.equal(labels[selected], ids[selected]),
        "labels must hold the original id at selected positions (-100 elsewhere)",
    )
    expect(
        torch.equal(masked[structural], ids[structural]),
        "structural tokens changed in masked_ids: leave [PAD], [CLS] and [SEP] as they are",
    )
    passed("[PAD], [CLS] and [SEP] are never selected")
    # With about 1700 selected codes, a correct masker makes no random replacement with probability below 1e-70.
    replaced = selected & (masked != MASK_ID) & (masked != ids)
    expect(replaced.any(), "no random replacements at all: 10% of selected events become a random code")
    expect_80_10_10(masked, ids, labels, vocab_size)
    passed("80% [MASK], 10% a random code, 10% unchanged; random replacements are real codes")

    big = event_batch(rows=400, length=60, vocab_size=vocab_size, seed=1)
    eligible = big >= len(SPECIAL_TOKENS)
    masked, labels = mask_events(big, vocab_size, 0.15, torch.Generator().manual_seed(1))
    selected = labels != IGNORE_INDEX
    expect(torch.equal(masked[~selected], big[~selected]), "you changed an event that was not selected")
    expect_share(
        int(selected[eligible].sum()),
        int(eligible.sum()),
        0.15,
        None,
        "the selection rate over the events is not mlm_probability",
        "select each code independently with probability mlm_probability; the rate is over events, not all positions",
    )
    passed(f"selection rate {int(selected.sum()) / int(eligible.sum()):.3f} of events (expected 0.15)")
    torch.manual_seed(0)
    first = mask_events(big, vocab_size, 0.15, torch.Generator().manual_seed(7))
    torch.manual_seed(1)  # the global generator moves on; only the generator passed in may decide
    second = mask_events(big, vocab_size, 0.15, torch.Generator().manual_seed(7))
    expect(
        torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]),
        "the same generator seed must give the same masks: pass generator to every random call",
    )
    passed("reproducible under a seeded generator")


def check_outcome_head_loss(outcome_head_loss_fn) -> None:
    """Exercise 4: the [CLS] state through the head, then binary cross-entropy on logits."""
    torch.manual_seed(0)
    head = nn.Linear(8, 1)
    hidden = torch.randn(5, 7, 8, requires_grad=True)
    labels = torch.tensor([1, 0, 0, 1, 1])
    (loss, logits), (hidden_grad,) = gradients(outcome_head_loss_fn, hidden, head, labels, wrt=[hidden], output_index=0)
    expect_tensor(logits, "logits", shape=(5,))
    expect(loss.dim() == 0, f"the loss must be a scalar (the mean over patients), got shape {tuple(loss.shape)}")
    expect(hidden_grad is not None, "no gradient reached hidden: compute the loss from hidden, without .detach()")
    expect(
        hidden_grad[:, 1:].abs().sum() == 0,
        "you pooled over positions other than [CLS]: the head reads hidden[:, 0] only",
    )
    expect(hidden_grad[:, 0].abs().sum() > 0, "the loss does not depend on the [CLS] state hidden[:, 0]")
    expected_loss, expected_logits = outcome_head_loss(hidden.detach(), head, labels)
    double = nn.functional.binary_cross_entropy_with_logits(torch.sigmoid(expected_logits), labels.float())
    expect(
        not torch.isclose(loss.detach(), double, atol=1e-6),
        "you applied a sigmoid before binary_cross_entropy_with_logits: it takes raw logits",
    )
    expect_close(logits, expected_logits, "your logits differ from head(hidden[:, 0])")
    expect_close(loss, expected_loss, "your loss differs from binary cross-entropy on the logits")
    passed("head(hidden[:, 0]) and binary cross-entropy")
    with torch.no_grad():
        confident = torch.zeros(2, 3, 8)
        confident[:, 0, 0] = torch.tensor([200.0, -200.0])
        sure = nn.Linear(8, 1)
        sure.weight.zero_()
        sure.weight[0, 0] = 1.0
        sure.bias.zero_()
        loss, _ = outcome_head_loss_fn(confident, sure, torch.tensor([0, 1]))
    expect(
        torch.isfinite(loss),
        "the loss is inf/nan for confident wrong logits: log(sigmoid(x)) underflows; "
        "use binary_cross_entropy_with_logits",
    )
    expect(
        abs(loss.item() - 200.0) < 1e-3,
        f"confidently wrong logits of +-200 should cost 200 each, got {loss.item():.3f}",
    )
    passed("numerically stable for confident logits")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed.
REFERENCES = {
    "patient_sequence": ("course_utils.ehr.sequences:patient_sequence",),
    "embed_events": ("course_utils.models.behrt:BehrtEmbedding.forward",),
    "mask_events": ("course_utils.models.behrt:mask_events",),
    "outcome_head_loss": (
        "course_utils.models.behrt:outcome_head_loss",
        "course_utils.models.behrt:BehrtForOutcome.forward",
    ),
}
