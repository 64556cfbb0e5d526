"""Text for Lab 2: a corpus with planted facts, a WordPiece tokenizer, and MLM evaluation.

    corpus = make_corpus(20_000, seed=0)              # .train, .heldout, .probes, .seen_probes
    tokenizer = train_tokenizer(corpus.train)         # [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
    batch = encode_batch(tokenizer, corpus.heldout[:8])  # {"input_ids", "attention_mask"}: [B, L]
    fact_probe_accuracy(model, tokenizer, corpus.probes)  # LAMA-style top-1 on unseen phrasings
    fill_mask(model, tokenizer, "the [MASK] of japan is [MASK] .")  # top-k for each [MASK], in order

**The corpus.** ``make_corpus`` writes English sentences from templates, deterministically:

* *facts* -- every country's capital and language, each in several phrasings. Two
  capital phrasings of every country never appear in training; they become the
  ``probes`` (capital masked), so a correct answer means the model *stored* the fact and
  reads it back through a sentence it never saw, not that it recalls a string. The
  ``seen_probes`` mask the capital in phrasings that do occur in training: recall of a string;
* *clinical notes* in the seeds' style ("the patient presented with severe chest pain"),
  where each drug treats one condition and each symptom points to one department;
* *agreement*: "the dogs near the house are barking" -- the verb agrees with the subject,
  not with the nearest noun.

**Other text.** ``load_text_file`` reads any local ``.txt`` (one sentence or paragraph per
line); ``load_wikitext2`` fetches WikiText-2 through Hugging Face ``datasets`` for readers
with a network (optional; never used by the tests).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from course_utils.masking import IGNORE_INDEX, SPECIAL_TOKENS, mask_by_strategy

# ---------------------------------------------------------------------------------------------
# The embedded corpus
# ---------------------------------------------------------------------------------------------

# (country, capital, language): single-word names, so each is one WordPiece token.
COUNTRIES = (
    ("france", "paris", "french"),
    ("germany", "berlin", "german"),
    ("italy", "rome", "italian"),
    ("spain", "madrid", "spanish"),
    ("portugal", "lisbon", "portuguese"),
    ("austria", "vienna", "german"),
    ("greece", "athens", "greek"),
    ("poland", "warsaw", "polish"),
    ("sweden", "stockholm", "swedish"),
    ("norway", "oslo", "norwegian"),
    ("finland", "helsinki", "finnish"),
    ("denmark", "copenhagen", "danish"),
    ("ireland", "dublin", "english"),
    ("hungary", "budapest", "hungarian"),
    ("russia", "moscow", "russian"),
    ("egypt", "cairo", "arabic"),
    ("kenya", "nairobi", "swahili"),
    ("japan", "tokyo", "japanese"),
    ("china", "beijing", "chinese"),
    ("thailand", "bangkok", "thai"),
    ("peru", "lima", "spanish"),
    ("chile", "santiago", "spanish"),
    ("cuba", "havana", "spanish"),
    ("canada", "ottawa", "english"),
)

# Every phrasing of "capital_of(country) = city". Per country, two are held out for probing.
CAPITAL_TEMPLATES = (
    "{city} is the capital of {country} .",
    "the capital of {country} is {city} .",
    "{city} is the capital city of {country} .",
    "the government of {country} sits in {city} .",
    "{country} is governed from its capital , {city} .",
    "we flew to {city} , the capital of {country} .",
    "{city} has been the capital of {country} for centuries .",
    "in {country} , the capital is {city} .",
)
HELD_OUT_PER_FACT = 2

LANGUAGE_TEMPLATES = (
    "{language} is the language of {country} .",
    "people in {country} speak {language} .",
    "the main language of {country} is {language} .",
)

# Each drug treats one condition; each symptom belongs to one department.
TREATMENTS = (
    ("insulin", "diabetes"),
    ("metformin", "diabetes"),
    ("aspirin", "headache"),
    ("amoxicillin", "infection"),
    ("penicillin", "infection"),
    ("salbutamol", "asthma"),
    ("warfarin", "thrombosis"),
    ("levothyroxine", "hypothyroidism"),
)
SYMPTOMS = (
    ("chest pain", "cardiology"),
    ("palpitations", "cardiology"),
    ("shortness of breath", "pulmonology"),
    ("a persistent cough", "pulmonology"),
    ("abdominal pain", "gastroenterology"),
    ("nausea", "gastroenterology"),
    ("a skin rash", "dermatology"),
    ("blurred vision", "ophthalmology"),
)
SEVERITIES = ("mild", "moderate", "severe", "sudden", "worsening")
CLINICAL_TEMPLATES = (
    "the patient presented with {severity} {symptom} .",
    "the patient with {symptom} was referred to {department} .",
    "she was seen in {department} for {severity} {symptom} .",
    "the doctor prescribed {drug} for his {condition} .",
    "{drug} was started to treat the {condition} .",
    "the nurse gave {drug} because of her {condition} .",
)

# (singular, plural) nouns and (singular, plural) verb phrases for agreement.
NOUNS = (
    ("dog", "dogs"),
    ("cat", "cats"),
    ("child", "children"),
    ("doctor", "doctors"),
    ("teacher", "teachers"),
    ("bird", "birds"),
)
VERBS = (
    ("is sleeping", "are sleeping"),
    ("was running", "were running"),
    ("likes music", "like music"),
    ("has a ball", "have a ball"),
)
PLACES = ("house", "houses", "park", "trees", "river", "cars")
AGREEMENT_TEMPLATES = ("the {noun} {verb} .", "the {noun} near the {place} {verb} .", "the {noun} that we saw {verb} .")


@dataclass(frozen=True)
class FactProbe:
    """One held-out phrasing with its answer masked: ``text`` holds one ``[MASK]``."""

    text: str
    answer: str
    country: str


@dataclass
class Corpus:
    """``train`` and ``heldout`` sentences (disjoint), the held-out fact ``probes`` and the ``seen_probes``.

    ``seen_probes`` mask the capital in phrasings that occur verbatim in ``train``.
    """

    train: list[str]
    heldout: list[str]
    probes: list[FactProbe] = field(default_factory=list)
    seen_probes: list[FactProbe] = field(default_factory=list)


def held_out_templates(fact_index: int) -> set[int]:
    """Indices into ``CAPITAL_TEMPLATES`` never used in training for country number ``fact_index``.

    They rotate, so every phrasing is seen in training (for the other countries) and every
    country has ``HELD_OUT_PER_FACT`` phrasings that only the probe uses.
    """
    return {(fact_index * HELD_OUT_PER_FACT + k) % len(CAPITAL_TEMPLATES) for k in range(HELD_OUT_PER_FACT)}


def _fact_sentence(rng: random.Random, seen_only: bool, language_fraction: float = 0.2) -> str:
    index = rng.randrange(len(COUNTRIES))
    country, city, language = COUNTRIES[index]
    if rng.random() < language_fraction:
        return rng.choice(LANGUAGE_TEMPLATES).format(country=country, language=language)
    allowed = [t for i, t in enumerate(CAPITAL_TEMPLATES) if not (seen_only and i in held_out_templates(index))]
    return rng.choice(allowed).format(country=country, city=city)


def _clinical_sentence(rng: random.Random) -> str:
    drug, condition = rng.choice(TREATMENTS)
    symptom, department = rng.choice(SYMPTOMS)
    return rng.choice(CLINICAL_TEMPLATES).format(
        severity=rng.choice(SEVERITIES), symptom=symptom, department=department, drug=drug, condition=condition
    )


def _agreement_sentence(rng: random.Random) -> str:
    number = rng.randrange(2)  # 0 singular, 1 plural
    return rng.choice(AGREEMENT_TEMPLATES).format(
        noun=rng.choice(NOUNS)[number], verb=rng.choice(VERBS)[number], place=rng.choice(PLACES)
    )


@dataclass(frozen=True)
class CorpusShares:
    """What share of ``make_corpus``'s sentences is of each kind; the defaults are Lab 2's corpus.

    ``fact_share`` of the sentences are facts, ``language_fraction`` of those a language fact and the rest a
    capital fact; ``clinical_share`` are clinical notes; the remainder are agreement sentences.
    """

    fact_share: float = 0.6
    language_fraction: float = 0.2
    clinical_share: float = 0.2

    def __post_init__(self):
        for name in ("fact_share", "language_fraction", "clinical_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.fact_share + self.clinical_share > 1.0 + 1e-9:
            raise ValueError(f"fact_share + clinical_share must be <= 1, got {self.fact_share + self.clinical_share}")


def _sentence(rng: random.Random, seen_only: bool, shares: CorpusShares = CorpusShares()) -> str:
    kind = rng.random()
    if kind < shares.fact_share:
        return _fact_sentence(rng, seen_only, shares.language_fraction)
    if kind < shares.fact_share + shares.clinical_share:
        return _clinical_sentence(rng)
    return _agreement_sentence(rng)


def fact_probes() -> list[FactProbe]:
    """Every held-out capital phrasing with the capital replaced by ``[MASK]``."""
    return [
        FactProbe(CAPITAL_TEMPLATES[t].format(country=country, city="[MASK]"), city, country)
        for index, (country, city, _) in enumerate(COUNTRIES)
        for t in sorted(held_out_templates(index))
    ]


def seen_fact_probes(train: list[str]) -> list[FactProbe]:
    """Every capital phrasing that occurs verbatim in ``train``, with the capital replaced by ``[MASK]``."""
    sentences = set(train)
    return [
        FactProbe(template.format(country=country, city="[MASK]"), city, country)
        for country, city, _ in COUNTRIES
        for template in CAPITAL_TEMPLATES
        if template.format(country=country, city=city) in sentences
    ]


def make_corpus(
    num_sentences: int, seed: int = 0, heldout_fraction: float = 0.1, shares: CorpusShares | None = None
) -> Corpus:
    """``num_sentences`` training sentences (a mix of facts, clinical notes and agreement) and held-out text.

    ``shares`` (a ``CorpusShares``; default: Lab 2's mix) sets how many sentences are of each kind.

    Training never contains a held-out capital phrasing. ``heldout`` holds about
    ``heldout_fraction * num_sentences`` sentences that do not occur in ``train``, the
    held-out phrasings (capital unmasked) among them. Same arguments, same corpus.
    """
    if not isinstance(num_sentences, int) or num_sentences < 1:
        raise ValueError(f"num_sentences must be a positive int, got {num_sentences!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    shares = shares or CorpusShares()
    rng = random.Random(seed)
    train = [_sentence(rng, seen_only=True, shares=shares) for _ in range(num_sentences)]
    seen = set(train)
    unseen_phrasings = [probe.text.replace("[MASK]", probe.answer) for probe in fact_probes()]
    heldout, attempts = [], 0
    wanted = max(1, round(heldout_fraction * num_sentences))
    while len(heldout) < wanted and attempts < 50 * wanted:
        attempts += 1
        sentence = _sentence(rng, seen_only=False, shares=shares)
        if sentence not in seen:
            heldout.append(sentence)
    return Corpus(
        train=train, heldout=heldout + unseen_phrasings, probes=fact_probes(), seen_probes=seen_fact_probes(train)
    )


def load_text_file(path: str | Path, min_chars: int = 1) -> list[str]:
    """Non-empty lines (stripped, at least ``min_chars`` long) of a local UTF-8 ``.txt`` file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing text file, got {str(path)!r}")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if len(line) >= min_chars]


def load_wikitext2(split: str = "train", min_chars: int = 20) -> list[str]:
    """WikiText-2 (raw) lines through Hugging Face ``datasets``; needs ``pip install datasets`` and a network."""
    try:
        from datasets import load_dataset
    except ImportError as error:
        raise ImportError("load_wikitext2 needs Hugging Face datasets: pip install 'course-utils[data]'") from error
    rows = load_dataset("wikitext", "wikitext-2-raw-v1", split=split)["text"]
    lines = (row.strip() for row in rows)
    return [line for line in lines if len(line) >= min_chars and not line.startswith("=")]


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int = 1000, min_frequency: int = 2) -> Tokenizer:
    """A lower-casing WordPiece tokenizer trained on ``texts``; specials ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``.

    Encodings come out as ``[CLS] tokens [SEP]`` (pairs as ``[CLS] a [SEP] b [SEP]``). The same
    ``texts`` always give the same vocabulary (see ``_continuing_pieces``).
    """
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *_continuing_pieces(texts, normalizer, pre_tokenizer)],
        show_progress=False,
    )
    learner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    learner.normalizer, learner.pre_tokenizer = normalizer, pre_tokenizer
    learner.train_from_iterator(texts, trainer=trainer)

    # Rebuild from the learned vocabulary, so that only BERT's five specials are special tokens.
    tokenizer = Tokenizer(models.WordPiece(learner.get_vocab(), unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer


def _continuing_pieces(texts: list[str], normalizer, pre_tokenizer) -> list[str]:
    """``##c`` for every character ``c`` that follows another inside a word, sorted.

    ``WordPieceTrainer`` adds these pieces to the vocabulary in hash-map order, which changes
    from run to run, and merge ties then break differently: the same text gave a different
    vocabulary each time (huggingface/tokenizers#1794). Handing them over as fixed tokens,
    in sorted order, makes training deterministic.
    """
    characters = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            characters.update(word[1:])
    return [f"##{character}" for character in sorted(characters)]


def special_token_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """Ids of ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (never masked, never a random replacement)."""
    return tuple(tokenizer.token_to_id(token) for token in SPECIAL_TOKENS)


def encode_batch(tokenizer: Tokenizer, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize and pad ``texts`` to the longest (truncated to ``max_length``).

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` and ``word_ids`` (the word
    each token belongs to, -1 for specials and padding; whole-word masking needs it), all ``[B, L]``.
    """
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    encodings = tokenizer.encode_batch(list(texts))
    if max_length is not None:
        for encoding in encodings:
            encoding.truncate(max_length)  # a truncated encoding loses its final [SEP]; fine for MLM
    length = max(len(encoding.ids) for encoding in encodings)
    batch = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "word_ids": []}
    for encoding in encodings:
        encoding.pad(length, pad_id=0, pad_token="[PAD]")
        batch["input_ids"].append(encoding.ids)
        batch["attention_mask"].append(encoding.attention_mask)
        batch["token_type_ids"].append(encoding.type_ids)
        batch["word_ids"].append([-1 if word is None else word for word in encoding.word_ids])
    return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


# ---------------------------------------------------------------------------------------------
# MLM training loss and evaluation (only ever on the selected positions)
# ---------------------------------------------------------------------------------------------


def masker_ids(tokenizer: Tokenizer) -> dict:
    """``mask_token_id``, ``vocab_size`` and ``special_token_ids`` of ``tokenizer``:
    the keywords every Lab 1 masker needs."""
    return dict(
        mask_token_id=tokenizer.token_to_id("[MASK]"),
        vocab_size=tokenizer.get_vocab_size(),
        special_token_ids=special_token_ids(tokenizer),
    )


def mlm_loss_fn(tokenizer: Tokenizer, strategy: str = "token", **masking_options):
    """``loss_fn(model, batch)`` for ``course_utils.train.fit``: mask, then score the selected positions.

    ``strategy`` is a Lab 1 masker (``"token"``, ``"whole_word"`` or ``"span"``, see
    ``course_utils.masking.mask_by_strategy``); ``masking_options`` go to it (``mlm_probability``, ...).
    A fresh mask is drawn at every step (dynamic masking, as in RoBERTa).
    """
    options = masker_ids(tokenizer) | masking_options

    def loss_fn(model, batch):
        masked_ids, labels = mask_by_strategy(strategy, batch["input_ids"], batch.get("word_ids"), **options)
        return model.mlm_loss(masked_ids, labels, batch["attention_mask"], batch.get("token_type_ids"))

    return loss_fn


@torch.no_grad()
def masked_lm_metrics(
    model,
    encoded: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    strategy: str = "token",
    batch_size: int = 256,
    seed: int = 0,
    **masking_options,
) -> dict[str, float]:
    """Masked-token accuracy and perplexity on held-out text, over the selected positions only.

    ``encoded`` is ``encode_batch``'s output. The same ``seed`` draws the same masks, so two
    models are compared on identical positions. Returns ``{"accuracy", "perplexity", "loss",
    "positions"}``; perplexity is ``exp(mean cross-entropy over the selected positions)``.
    """
    options = masker_ids(tokenizer) | masking_options
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, len(encoded["input_ids"]), batch_size):
        rows = {key: value[start : start + batch_size] for key, value in encoded.items()}
        masked_ids, labels = mask_by_strategy(
            strategy, rows["input_ids"], rows.get("word_ids"), generator=generator, **options
        )
        logits = model(masked_ids.to(device), rows["attention_mask"].to(device)).float()  # [B, L, V]
        selected = (labels != IGNORE_INDEX).to(device)  # [B, L]
        targets = labels.to(device)[selected]  # [S]
        total_loss += F.cross_entropy(logits[selected], targets, reduction="sum").item()
        correct += (logits[selected].argmax(-1) == targets).sum().item()
        count += targets.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("no position was selected for prediction; pass more text or a higher mlm_probability")
    loss = total_loss / count
    return {"accuracy": correct / count, "perplexity": math.exp(loss), "loss": loss, "positions": count}


def fill_mask(model, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top_k`` ``(token, probability)`` pairs for each ``[MASK]`` in ``text``, masks in order.

        [top] = fill_mask(model, tokenizer, "Paris is the [MASK] of France.")
        first, second = fill_mask(model, tokenizer, "the [MASK] near the house [MASK] sleeping .")

    One forward pass predicts every ``[MASK]`` independently: each given the text with all the
    other masks still masked. Each list is a marginal; the probability of filling two masks
    together is not the product of the two (the model never sees one filled in while it predicts
    the other).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string with at least one [MASK], got {type(text).__name__}")
    return fill_masks(model, tokenizer, [text], top_k)[0]


@torch.no_grad()
def fill_masks(model, tokenizer: Tokenizer, texts: list[str], top_k: int = 5) -> list[list[list[tuple[str, float]]]]:
    """``fill_mask`` for many texts in one batch: one list per text, holding one top-``k`` list per ``[MASK]``."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings, each with at least one [MASK]")
    vocab_size = tokenizer.get_vocab_size()
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size:
        raise ValueError(f"top_k must be an int in [1, vocab_size={vocab_size}], got {top_k!r}")
    batch = encode_batch(tokenizer, texts)
    is_mask = batch["input_ids"] == tokenizer.token_to_id("[MASK]")  # [B, L]
    masks_per_text = is_mask.sum(1).tolist()
    unmasked = [text for text, count in zip(texts, masks_per_text) if count == 0]
    if unmasked:
        raise ValueError(f"every text must contain at least one [MASK] token; without one: {unmasked!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))  # [B, L, V]
    model.train(was_training)
    # Boolean indexing keeps row-major order: text by text, and left to right within a text.
    top = logits[is_mask.to(device)].float().softmax(-1).topk(top_k, dim=-1)  # [M, k], M masks in all
    ranked = [
        [(tokenizer.id_to_token(i), p) for i, p in zip(ids, probabilities)]
        for ids, probabilities in zip(top.indices.tolist(), top.values.tolist())
    ]
    ends = torch.tensor(masks_per_text).cumsum(0).tolist()
    return [ranked[end - count : end] for count, end in zip(masks_per_text, ends)]


def fact_probe_accuracy(model, tokenizer: Tokenizer, probes: list[FactProbe]) -> float:
    """LAMA-style probe: the fraction of ``probes`` (one ``[MASK]`` each) whose top-1 prediction is the answer."""
    if not probes:
        raise ValueError("probes must be a non-empty list of FactProbe")
    predictions = fill_masks(model, tokenizer, [probe.text for probe in probes], top_k=1)
    if any(len(masks) != 1 for masks in predictions):
        raise ValueError("every probe text must contain exactly one [MASK]")
    return sum(masks[0][0][0] == probe.answer for masks, probe in zip(predictions, probes)) / len(probes)
