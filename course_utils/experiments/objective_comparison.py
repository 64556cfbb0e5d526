"""Lab 5's experiment: five pretraining objectives on one encoder, at equal training compute.

    comparison = compare_objectives(comparison_config())     # sizes from the profile (ci, cpu, gpu)
    comparison.formatted()                                   # one row per objective: mean [95% interval] over seeds
    comparison.probe_table("held-out")                       # each objective next to its floors
    comparison.curves                                        # loss and probe against training FLOPs
    print("\n".join(reading(comparison)))                   # the table in sentences

Every objective trains the same post-LN encoder (width, depth, heads, feed-forward) on Lab 2's
sentences, mixed to be fact-dense (``ComparisonConfig.shares``), for the same budget of training
FLOPs (``course_utils.models.flops``): the budget is what MLM spends in ``budget_mlm_steps`` steps,
and each objective gets ``budget // its FLOPs per step`` steps. Each pretrained encoder is then
measured on

* **the fact probe**: Lab 2's held-out (country, phrasing) pairs with the capital blanked, answered
  as a ranking of the 24 capitals (``probe_ranks``: top-1 and mean reciprocal rank), and the same
  question on pairs that occur in training (the seen probe). Its floors (``probe_floors``): true
  chance, the phrasing prior (rank the capitals by how often each follows the phrasing in training)
  and the untrained model. Every phrasing of a held-out pair is seen in training with other
  countries, so the prior is below chance on held-out pairs and above it on seen ones;
* **a downstream task** (``fact_check_task``): is a sentence a planted fact or a corrupted one
  (a wrong capital or language)? The encoder is fine-tuned from a few labelled sentences (the
  label budgets) in some phrasings and tested on phrasings that fine-tuning never shows;
* its **parameter count** and its **pretraining wall-clock time**.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.device import get_device, seed_everything
from course_utils.experiments.core import (
    FineTuning,
    finetuned_accuracy,
    interval,
    require_ints,
    require_subset,
    sized,
    steps_for_budget,
    summarise,
    with_interval,
)
from course_utils.masking import mask_tokens
from course_utils.models.albert import AlbertConfig, AlbertForMaskedLM
from course_utils.models.bert import BertConfig, BertForMaskedLM
from course_utils.models.causal_lm import CausalLM, sequence_log_likelihood
from course_utils.models.electra import ElectraForPretraining, sample_replacements
from course_utils.models.flops import OBJECTIVES, training_flops_per_step
from course_utils.models.permutation_lm import PermutationLM, sample_factorization_order
from course_utils.text import (
    CAPITAL_TEMPLATES,
    COUNTRIES,
    LANGUAGE_TEMPLATES,
    NOUNS,
    PLACES,
    VERBS,
    Corpus,
    CorpusShares,
    FactProbe,
    encode_batch,
    make_corpus,
    masker_ids,
    mlm_loss_fn,
    train_tokenizer,
)
from course_utils.train import TrainConfig, batches, fit

ELECTRA_MASKING = dict(mask_replace_prob=0.85, random_replace_prob=0.0)  # official code: 85% [MASK], 15% kept
FACT_CHECK_HELD_OUT_CAPITAL_TEMPLATES = (5, 6, 7)  # indices into CAPITAL_TEMPLATES never used in fine-tuning
FACT_CHECK_HELD_OUT_LANGUAGE_TEMPLATES = (2,)
PROBES = {"held-out": "probe", "seen": "seen"}  # probe name -> column prefix in Comparison.runs
PAIR_METRICS = ("agreement_pairs", "capital_pairs")  # zero-shot minimal pairs, scored by sentence_scores
PROBE_PASSES = dict(mlm=1, albert=1, permutation=1, electra=24, causal=24)  # candidate_scores' forward rows per probe


@dataclass
class ComparisonConfig:
    """Every size of the comparison; ``comparison_config()`` picks them by profile."""

    objectives: tuple[str, ...] = OBJECTIVES
    seeds: tuple[int, ...] = (0, 1, 2)
    # the data
    num_sentences: int = 20_000
    tokenizer_vocab_size: int = 1000
    # fact-dense: 80% capital facts, 5% language facts, 5% clinical notes, 10% agreement (Lab 2: 48/12/20/20)
    shares: CorpusShares = field(default_factory=lambda: CorpusShares(0.85, 0.06, 0.05))
    # the encoder every objective trains, and what each objective adds
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    albert_embedding_size: int = 16
    # ELECTRA's best range is 1/4 to 1/2 of the discriminator. Measured at the `cpu` sizes, 3 seeds: neither stores a
    # fact (held-out top-1 0 at both); of the capitals replaced, other capitals 0.90 at 1/2 against 0.76-0.90 at 1/4
    generator_width_fraction: float = 0.5
    mlm_probability: float = 0.15
    num_predict: int = 2  # permutation LM targets per sentence (~1/6 of its tokens, as XLNet's K = 6)
    # pretraining at equal FLOPs
    batch_size: int = 64
    budget_mlm_steps: int = 1500  # the FLOP budget: what MLM spends in this many steps
    # post-LN; swept for MLM at 1500 steps, held-out top-1 of seeds 0, 1, 2: 2e-3 0.23 0.13 0.58, 3e-3 0.46 0.85 0.79,
    # 4e-3 0.23 0.25 0.60 (at 2000 steps, 5e-3 stalled one seed in three and 1e-2 every one)
    learning_rate: float = 3e-3
    probe_evaluations: int = 4  # the probes this many times during pretraining (and at step 0), for the curves
    loss_points: int = 40  # the loss curve: means over this many equal windows of steps
    # fine-tuning
    label_budgets: tuple[int, ...] = (320,)  # labelled sentences, out of the 336 in FactCheckTask.train
    finetune: FineTuning = field(default_factory=lambda: FineTuning(max_steps=200, eval_every=20, patience=5, lr=2e-3))

    def __post_init__(self):
        require_subset("objectives", self.objectives, OBJECTIVES)
        require_ints("seeds", self.seeds, 0)
        require_ints("label_budgets", self.label_budgets, 4, "part of each is kept for early stopping")

    def bert_config(self, vocab_size: int, max_positions: int) -> BertConfig:
        """The encoder every objective shares (no dropout: the probe asks it to memorise facts)."""
        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=max(64, max_positions),
            dropout=0.0,
        )

    def corpus(self) -> Corpus:
        """The training corpus: ``num_sentences`` sentences mixed by ``shares`` (seed 0)."""
        return make_corpus(self.num_sentences, seed=0, shares=self.shares)


def comparison_config(profile: str | None = None, **overrides) -> ComparisonConfig:
    """The sizes for ``profile`` (default: the current one), with ``overrides`` applied."""
    # fmt: off
    return sized(
        ComparisonConfig, profile, overrides,
        ci=dict(
            num_sentences=1_000, batch_size=16, budget_mlm_steps=10, probe_evaluations=2, seeds=(0,),
            hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, albert_embedding_size=16,
            label_budgets=(16,), finetune=FineTuning(max_steps=10, eval_every=5, patience=5, lr=2e-3, batch_size=8),
        ),
        cpu=dict(),
        gpu=dict(
            num_sentences=100_000, batch_size=128, budget_mlm_steps=3_000, learning_rate=1e-3,
            hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, albert_embedding_size=64,
        ),
    )
    # fmt: on


# --------------------------------------------------------------------------- models and losses


def model_config(objective: str, config: ComparisonConfig, bert_config: BertConfig) -> BertConfig:
    """``bert_config``, as an ``AlbertConfig`` with ``config.albert_embedding_size`` for ALBERT."""
    if objective != "albert":
        return bert_config
    values = {name: getattr(bert_config, name) for name in BertConfig.__dataclass_fields__}
    return AlbertConfig(**values, embedding_size=config.albert_embedding_size)


def build_model(objective: str, config: ComparisonConfig, bert_config: BertConfig) -> nn.Module:
    """A fresh model for ``objective`` around the shared encoder sizes ``bert_config``."""
    sizes = model_config(objective, config, bert_config)
    if objective == "mlm":
        return BertForMaskedLM(sizes)
    if objective == "electra":
        return ElectraForPretraining(sizes, config.generator_width_fraction)
    if objective == "causal":
        return CausalLM(sizes)
    if objective == "albert":
        return AlbertForMaskedLM(sizes)
    if objective == "permutation":
        return PermutationLM(sizes)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def pretraining_loss_fn(objective: str, config: ComparisonConfig, tokenizer):
    """``loss_fn(model, batch)`` for ``train.fit``: a fresh mask, corruption or order at every step."""
    if objective in ("mlm", "albert"):
        return mlm_loss_fn(tokenizer, strategy="token", mlm_probability=config.mlm_probability)
    if objective == "electra":
        options = masker_ids(tokenizer) | ELECTRA_MASKING | dict(mlm_probability=config.mlm_probability)

        def electra_step(model, batch):
            masked_ids, labels = mask_tokens(batch["input_ids"], **options)
            return model(batch["input_ids"], masked_ids, labels, batch["attention_mask"]).loss

        return electra_step
    if objective == "causal":
        return lambda model, batch: model.next_token_loss(batch["input_ids"], batch["attention_mask"])
    if objective == "permutation":

        def permutation_step(model, batch):
            order = sample_factorization_order(batch["attention_mask"], input_ids=batch["input_ids"])
            return model.permutation_loss(batch["input_ids"], batch["attention_mask"], order, config.num_predict)

        return permutation_step
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def predictions_per_sequence(
    objective: str, config: ComparisonConfig, attention_mask: torch.Tensor, num_special: int = 2
) -> float:
    """Mean positions per sequence that reach the vocabulary head (the FLOP count needs it).

    MLM-style: ``mlm_probability`` of the real tokens other than ``[CLS]`` and ``[SEP]``; causal:
    every real token after the first; permutation: ``min(num_predict, n - 2)``, [CLS] and [SEP] never predicted.
    """
    lengths = attention_mask.sum(1).double()  # [N]
    if objective in ("mlm", "albert", "electra"):
        return float(config.mlm_probability * (lengths - num_special).clamp(min=0).mean())
    if objective == "causal":
        return float((lengths - 1).clamp(min=0).mean())
    if objective == "permutation":
        return float((lengths - num_special).clamp(min=0, max=config.num_predict).mean())
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def flops_options(objective: str, config: ComparisonConfig) -> dict:
    return dict(generator_width_fraction=config.generator_width_fraction) if objective == "electra" else {}


# --------------------------------------------------------------------------- the fact probe


def capital_candidates(tokenizer) -> tuple[list[str], torch.Tensor]:
    """The 24 capitals and their token ids; each must be a single token of ``tokenizer``."""
    names = sorted({city for _, city, _ in COUNTRIES})
    ids = []
    for name in names:
        pieces = tokenizer.encode(name, add_special_tokens=False).ids
        if len(pieces) != 1:
            raise ValueError(f"tokenizer splits the capital {name!r} into {len(pieces)} pieces; train it on more text")
        ids.append(pieces[0])
    return names, torch.tensor(ids)


def _filled(input_ids: torch.Tensor, blank: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
    """Every probe with every candidate at its blank: ``[B, L]`` -> ``[B * C, L]`` (probe-major)."""
    repeated = input_ids.repeat_interleave(len(candidate_ids), dim=0)  # [B*C, L]
    repeated[blank.repeat_interleave(len(candidate_ids), dim=0)] = candidate_ids.repeat(len(input_ids))
    return repeated


@torch.no_grad()
def candidate_scores(objective: str, model: nn.Module, batch: dict, candidate_ids: torch.Tensor) -> torch.Tensor:
    """How much ``model`` favours each candidate at each probe's blank: ``[B, C]`` (higher is better).

    * ``mlm``, ``albert``: the MLM logit of the candidate at ``[MASK]``;
    * ``permutation``: the query stream's logit, with the blank predicted last, after every other token;
    * ``electra``: minus the discriminator's "replaced" logit at the blank, the candidate written in;
    * ``causal``: the log-likelihood of the whole sentence with the candidate written in.
    """
    input_ids, attention_mask, blank = batch["input_ids"], batch["attention_mask"], batch["blank"]
    if objective in ("mlm", "albert"):
        return model(input_ids, attention_mask)[blank][:, candidate_ids].float()
    if objective == "permutation":
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).expand_as(input_ids)
        keys = torch.where(attention_mask.bool(), positions, positions + 2 * length)
        order = torch.where(blank, length, keys).argsort(dim=1)  # the other real tokens, the blank, then padding
        logits, _ = model(input_ids, attention_mask, order, 1)  # [B, V]: one target per probe
        return logits[:, candidate_ids].float()
    count = len(candidate_ids)
    filled = _filled(input_ids, blank, candidate_ids)
    mask = attention_mask.repeat_interleave(count, dim=0)
    if objective == "electra":
        replaced_logits = model.discriminator(filled, mask)[blank.repeat_interleave(count, dim=0)]  # [B*C]
        return -replaced_logits.float().view(-1, count)
    if objective == "causal":
        return sequence_log_likelihood(model, filled, mask).view(-1, count)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def probe_batch(tokenizer, probes: list[FactProbe], device=None) -> dict[str, torch.Tensor]:
    """The probes encoded, with ``blank`` (bool ``[B, L]``) at each one's ``[MASK]`` and ``answer`` ids ``[B]``."""
    encoded = encode_batch(tokenizer, [probe.text for probe in probes])
    blank = encoded["input_ids"] == tokenizer.token_to_id("[MASK]")
    if not torch.equal(blank.sum(1), torch.ones(len(probes), dtype=torch.long)):
        raise ValueError("every probe must contain exactly one [MASK]")
    answers = torch.tensor([tokenizer.token_to_id(probe.answer) for probe in probes])
    batch = dict(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], blank=blank, answer=answers)
    return {key: value.to(device) for key, value in batch.items()}


def answer_ranks(scores: torch.Tensor, answer_index: torch.Tensor) -> torch.Tensor:
    """The rank of each answer among the candidates (1 = best): ``scores [B, C]``, ``answer_index [B]`` -> ``[B]``.

    Candidates tied with the answer count half, so a constant score ranks every answer in the middle.
    """
    answer = scores.gather(1, answer_index[:, None])  # [B, 1]
    better = (scores > answer).sum(1).double()
    tied = (scores == answer).sum(1).double() - 1
    return 1 + better + tied / 2


def rank_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """``top1`` (share of rank 1) and ``mrr`` (mean reciprocal rank) of ``ranks [B]``."""
    return {"top1": float((ranks == 1).double().mean()), "mrr": float((1 / ranks).mean())}


def probe_ranks(
    objective: str, model: nn.Module, tokenizer, probes: list[FactProbe], batch_size: int = 64
) -> dict[str, float]:
    """Top-1 and mean reciprocal rank of the answer when ``candidate_scores`` ranks the 24 capitals of each probe."""
    if not probes:
        raise ValueError("probes must be a non-empty list of FactProbe")
    device = next(model.parameters()).device
    _, candidate_ids = capital_candidates(tokenizer)
    candidate_ids = candidate_ids.to(device)
    was_training = model.training
    model.eval()
    ranks = []
    for start in range(0, len(probes), batch_size):
        batch = probe_batch(tokenizer, probes[start : start + batch_size], device)
        scores = candidate_scores(objective, model, batch, candidate_ids)  # [B, C]
        answer_index = (batch["answer"][:, None] == candidate_ids[None]).long().argmax(1)  # [B]
        ranks.append(answer_ranks(scores, answer_index).cpu())
    model.train(was_training)
    return rank_metrics(torch.cat(ranks))


def probe_accuracy(objective: str, model: nn.Module, tokenizer, probes: list[FactProbe], batch_size: int = 64) -> float:
    """Fraction of ``probes`` whose best-scored capital is the answer: the top-1 of ``probe_ranks``."""
    return probe_ranks(objective, model, tokenizer, probes, batch_size)["top1"]


def chance_floor(candidates: int = len(COUNTRIES)) -> dict[str, float]:
    """A uniformly random ranking of ``candidates``: top-1 ``1 / C``, MRR ``(1 + 1/2 + ... + 1/C) / C``."""
    return {"top1": 1 / candidates, "mrr": sum(1 / rank for rank in range(1, candidates + 1)) / candidates}


def phrasing_prior(train: list[str], probes: list[FactProbe]) -> dict[str, float]:
    """Top-1 and MRR of a model that knows only which capitals follow each phrasing in ``train``.

    It ranks the capitals of a probe by how often each fills that probe's phrasing in ``train`` (for any
    country), ties counting half (``answer_ranks``). It stores no fact: it is the floor a model must beat
    before it can be said to know which capital goes with which country.
    """
    if not probes:
        raise ValueError("probes must be a non-empty list of FactProbe")
    names = sorted({city for _, city, _ in COUNTRIES})
    counts = pd.Series(train).value_counts()
    frequency = {}  # the probe's phrasing with the country written in -> count of each candidate capital
    for template in CAPITAL_TEMPLATES:
        per_city = [
            sum(int(counts.get(template.format(country=country, city=name), 0)) for country, _, _ in COUNTRIES)
            for name in names
        ]
        for country, _, _ in COUNTRIES:
            frequency[template.format(country=country, city="[MASK]")] = per_city
    scores = torch.tensor([frequency[probe.text] for probe in probes], dtype=torch.double)  # [B, C]
    answer_index = torch.tensor([names.index(probe.answer) for probe in probes])
    return rank_metrics(answer_ranks(scores, answer_index))


def probe_floors(corpus: Corpus) -> pd.DataFrame:
    """True chance and the phrasing prior on each probe of ``corpus``: one row per (floor, probe), columns top1, mrr."""
    rows = []
    for probe, probes in (("held-out", corpus.probes), ("seen", corpus.seen_probes)):
        rows.append(dict(floor="true chance", probe=probe) | chance_floor())
        rows.append(dict(floor="phrasing prior", probe=probe) | phrasing_prior(corpus.train, probes))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the downstream task


@dataclass
class FactCheckTask:
    """Sentences labelled 1 (a planted fact) or 0 (corrupted); ``test`` uses phrasings ``train`` never does."""

    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def fact_check_task(seed: int = 0) -> FactCheckTask:
    """Every country in every capital and language phrasing, once true and once with a wrong capital or language.

    Capital phrasings ``FACT_CHECK_HELD_OUT_CAPITAL_TEMPLATES`` and language phrasings
    ``FACT_CHECK_HELD_OUT_LANGUAGE_TEMPLATES`` form ``test``; the others ``train``. The wrong
    filler is drawn (with ``seed``) among the other countries' capitals or languages.
    """
    rng = random.Random(seed)
    cities = sorted({city for _, city, _ in COUNTRIES})
    languages = sorted({language for _, _, language in COUNTRIES})
    task = FactCheckTask(train=[], test=[])
    for country, city, language in COUNTRIES:
        for index, template in enumerate(CAPITAL_TEMPLATES):
            split = task.test if index in FACT_CHECK_HELD_OUT_CAPITAL_TEMPLATES else task.train
            wrong = rng.choice([other for other in cities if other != city])
            split.append((template.format(country=country, city=city), 1))
            split.append((template.format(country=country, city=wrong), 0))
        for index, template in enumerate(LANGUAGE_TEMPLATES):
            split = task.test if index in FACT_CHECK_HELD_OUT_LANGUAGE_TEMPLATES else task.train
            wrong = rng.choice([other for other in languages if other != language])
            split.append((template.format(country=country, language=language), 1))
            split.append((template.format(country=country, language=wrong), 0))
    return task


class SentenceClassifier(nn.Module):
    """A pretrained encoder, pooled, then a linear layer: ``[B, L]`` -> logits ``[B, num_classes]``.

    ``pooling="mean"`` averages the real tokens (bidirectional encoders); ``"last"`` takes the last
    real token, the only one a left-to-right model has let see the whole sentence (as GPT does).
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, pooling: str = "mean", num_classes: int = 2):
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        self.encoder, self.pooling = encoder, pooling
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder.encode(input_ids, attention_mask)  # [B, L, D]
        real = attention_mask.to(hidden.dtype)[:, :, None]  # [B, L, 1]
        if self.pooling == "mean":
            pooled = (hidden * real).sum(1) / real.sum(1).clamp(min=1)
        else:
            last = attention_mask.sum(1).clamp(min=1) - 1  # [B]
            pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
        return self.classifier(pooled)  # [B, D] -> [B, C]


def pretrained_encoder(objective: str, model: nn.Module) -> nn.Module:
    """The part of a pretrained model that fine-tuning starts from (ELECTRA keeps its discriminator)."""
    return model.discriminator if objective == "electra" else model


def encoded_examples(tokenizer, examples: list[tuple[str, int]], length: int) -> dict[str, torch.Tensor]:
    """Labelled sentences as ``SentenceClassifier`` inputs: ``input_ids`` and ``attention_mask`` ``[N, length]``,
    ``labels`` ``[N]``."""
    encoded = encode_batch(tokenizer, [text for text, _ in examples], max_length=length)
    return dict(
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        labels=torch.tensor([label for _, label in examples]),
    )


def finetune_accuracy(
    objective: str,
    model: nn.Module,
    tokenizer,
    task: FactCheckTask,
    label_budget: int,
    recipe: FineTuning,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Test accuracy on held-out phrasings after fine-tuning a copy of ``model`` on ``label_budget`` labelled
    sentences of ``task.train`` (``core.finetuned_accuracy``); ``model`` is untouched."""
    encoder = copy.deepcopy(pretrained_encoder(objective, model))
    seed_everything(seed)
    classifier = SentenceClassifier(encoder, model.config.hidden_size, "last" if objective == "causal" else "mean")
    length = encoder.embeddings.position.num_embeddings
    train, test = (encoded_examples(tokenizer, examples, length) for examples in (task.train, task.test))
    return finetuned_accuracy(classifier, train, test, label_budget, recipe, seed, device or get_device())


# --------------------------------------------------------------------------- the comparison


def probe_metrics() -> list[str]:
    """The probe columns of ``Comparison.runs``: ``probe_top1``, ``probe_mrr``, ``seen_top1``, ``seen_mrr``."""
    return [f"{prefix}_{measure}" for prefix in PROBES.values() for measure in ("top1", "mrr")]


def fact_check_metric(label_budget: int) -> str:
    """The column name of the downstream accuracy with ``label_budget`` labels."""
    return f"fact_check_{label_budget}"


@dataclass
class Comparison:
    """What ``compare_objectives`` measured; ``table`` summarises ``runs`` over seeds."""

    runs: pd.DataFrame  # one row per (objective, seed)
    curves: pd.DataFrame  # objective, seed, step, training_flops, loss, then the probe metrics where evaluated
    floors: pd.DataFrame  # probe_floors: true chance and the phrasing prior on each probe
    budget_flops: float
    seconds: float  # the whole comparison, wall-clock
    metrics: list[str] = field(default_factory=list)  # the columns of runs that vary over seeds
    electra: pd.DataFrame = field(default_factory=pd.DataFrame)  # electra_measurements, one row per seed

    def electra_table(self) -> pd.DataFrame:
        """ELECTRA's measurements (``electra_measurements``): mean [95% interval] over seeds."""
        if self.electra.empty:
            return pd.DataFrame()
        names = [c for c in self.electra.columns if c not in ("objective", "seed")]
        table = summarise(self.electra, "objective", names)
        return pd.DataFrame(
            {name: [with_interval(*table.loc[0, [f"{name}_mean", f"{name}_low", f"{name}_high"]])] for name in names}
        )

    def scoring_table(self) -> pd.DataFrame:
        """Per objective: the forward passes of each scoring rule, and the zero-shot minimal-pair accuracies."""
        table = self.table
        shown = pd.DataFrame({"objective": table["objective"]})
        shown["probe passes per question"] = [PROBE_PASSES[o] for o in table["objective"]]
        shown["sentence-score passes per sentence"] = table["sentence_rows"].round(1)
        for metric in PAIR_METRICS:
            shown[metric] = [self.cell(objective, metric) for objective in table["objective"]]
        return shown

    @property
    def table(self) -> pd.DataFrame:
        """One row per objective: parameters, steps, FLOPs per step, then each metric's mean, sd and 95% interval."""
        return summarise(
            self.runs, "objective", self.metrics, fixed=["parameters", "steps", "flops_per_step", "sentence_rows"]
        )

    def cell(self, objective: str, metric: str) -> str:
        """``metric``'s mean [95% interval] for ``objective``."""
        row = self.table.set_index("objective").loc[objective]
        return with_interval(row[f"{metric}_mean"], row[f"{metric}_low"], row[f"{metric}_high"])

    def formatted(self) -> pd.DataFrame:
        """``table`` for reading: ``mean [95% interval]`` strings, FLOPs in GFLOPs, parameters in thousands."""
        table = self.table
        shown = pd.DataFrame({"objective": table["objective"]})
        shown["parameters (k)"] = (table["parameters"] / 1e3).round(1)
        shown["steps"] = table["steps"]
        shown["GFLOPs/step"] = (table["flops_per_step"] / 1e9).round(3)
        for metric in self.metrics:
            if not metric.startswith("untrained_") and metric not in PAIR_METRICS:
                shown[metric] = [self.cell(objective, metric) for objective in table["objective"]]
        return shown

    def floor(self, name: str, probe: str, measure: str) -> float:
        """``floors``' value of ``name`` ("true chance", "phrasing prior") on ``probe`` for ``measure`` (top1, mrr)."""
        rows = self.floors[(self.floors["floor"] == name) & (self.floors["probe"] == probe)]
        return float(rows[measure].item())

    def probe_table(self, probe: str = "held-out") -> pd.DataFrame:
        """Each objective's top-1 and MRR on ``probe`` next to its floors: the untrained model (mean over seeds),
        the phrasing prior and true chance."""
        prefix = PROBES[probe]
        shown = pd.DataFrame({"objective": self.table["objective"]})
        table = self.table
        for measure in ("top1", "mrr"):
            shown[measure] = [self.cell(objective, f"{prefix}_{measure}") for objective in table["objective"]]
            shown[f"untrained {measure}"] = table[f"untrained_{prefix}_{measure}_mean"].round(3)
            shown[f"prior {measure}"] = round(self.floor("phrasing prior", probe, measure), 3)
            shown[f"chance {measure}"] = round(self.floor("true chance", probe, measure), 3)
        return shown


def pretrain(
    objective: str,
    config: ComparisonConfig,
    bert_config: BertConfig,
    steps: int,
    data: dict,
    tokenizer,
    corpus,
    seed: int,
    device,
) -> tuple[nn.Module, list[dict], list[float], float]:
    """One pretraining run: ``(model, probe evaluations, losses, seconds)``; the seconds leave the probes out.

    Both probes (``corpus.probes``, ``corpus.seen_probes``) are evaluated on the untrained model (step 0),
    ``config.probe_evaluations`` times along the way and at the end; ``losses`` has one entry per step.
    """
    seed_everything(seed)
    model = build_model(objective, config, bert_config).to(device)
    evaluation_seconds = 0.0

    def evaluate(model):
        nonlocal evaluation_seconds
        begin = time.perf_counter()
        results = {}
        for probe, probes in (("held-out", corpus.probes), ("seen", corpus.seen_probes)):
            for measure, value in probe_ranks(objective, model, tokenizer, probes).items():
                results[f"{PROBES[probe]}_{measure}"] = value
        evaluation_seconds += time.perf_counter() - begin
        return results

    untrained = {"step": 0} | evaluate(model)
    evaluation_seconds = 0.0
    schedule = TrainConfig(
        steps=steps, lr=config.learning_rate, live_plot=False, eval_every=max(1, steps // config.probe_evaluations)
    )
    loader = batches(data, config.batch_size, seed=seed)
    begin = time.perf_counter()
    history = fit(model, loader, pretraining_loss_fn(objective, config, tokenizer), schedule, device, evaluate)
    seconds = time.perf_counter() - begin - evaluation_seconds
    return model, [untrained, *history.evaluations], history.losses, seconds


def curve_rows(objective: str, seed: int, evaluations: list[dict], losses: list[float], per_step: float, points: int):
    """The rows of ``Comparison.curves`` for one run: the loss averaged over ``points`` windows of steps (at each
    window's last step), and the probe evaluations at their steps (columns left empty where not measured)."""
    rows = {}
    window = max(1, len(losses) // points)
    for end in range(window, len(losses) + 1, window):
        rows[end] = dict(loss=sum(losses[end - window : end]) / window)
    for evaluation in evaluations:
        rows.setdefault(evaluation["step"], {}).update({k: v for k, v in evaluation.items() if k != "step"})
    return [
        dict(objective=objective, seed=seed, step=step, training_flops=step * per_step) | values
        for step, values in sorted(rows.items())
    ]


def compare_objectives(config: ComparisonConfig | None = None, device: torch.device | None = None) -> Comparison:
    """Pretrain every objective in ``config.objectives`` for each seed at equal FLOPs, then probe and fine-tune it."""
    started = time.perf_counter()
    config = config or comparison_config()
    device = device or get_device()
    corpus = config.corpus()
    tokenizer = train_tokenizer(corpus.train, vocab_size=config.tokenizer_vocab_size)
    train_data = encode_batch(tokenizer, corpus.train)
    seq_len = train_data["input_ids"].shape[1]
    bert_config = config.bert_config(tokenizer.get_vocab_size(), seq_len)
    task = fact_check_task(seed=0)

    def flops_per_step(objective: str) -> float:
        predicted = predictions_per_sequence(objective, config, train_data["attention_mask"])
        sizes, options = model_config(objective, config, bert_config), flops_options(objective, config)
        return training_flops_per_step(objective, sizes, config.batch_size, seq_len, predicted, **options)

    budget = flops_per_step("mlm") * config.budget_mlm_steps
    runs, curves, electra = [], [], []
    for seed in config.seeds:
        for objective in config.objectives:
            per_step = flops_per_step(objective)
            steps = steps_for_budget(budget, per_step)
            model, evaluations, losses, seconds = pretrain(
                objective, config, bert_config, steps, train_data, tokenizer, corpus, seed, device
            )
            curves += curve_rows(objective, seed, evaluations, losses, per_step, config.loss_points)
            row = dict(
                objective=objective,
                seed=seed,
                parameters=sum(p.numel() for p in model.parameters()),
                steps=steps,
                flops_per_step=per_step,
            )
            row |= {metric: evaluations[-1][metric] for metric in probe_metrics()}
            row |= {f"untrained_{metric}": evaluations[0][metric] for metric in probe_metrics()}
            row["agreement_pairs"], row["sentence_rows"] = minimal_pair_accuracy(
                objective, model, tokenizer, agreement_pairs()
            )
            row["capital_pairs"], _ = minimal_pair_accuracy(objective, model, tokenizer, capital_pairs(corpus.probes))
            if objective == "electra":
                measured = electra_measurements(model, tokenizer, corpus, config, seed)
                electra.append(dict(objective=objective, seed=seed) | measured)
            for label_budget in config.label_budgets:
                row[fact_check_metric(label_budget)] = finetune_accuracy(
                    objective, model, tokenizer, task, label_budget, config.finetune, seed, device
                )
            row["pretraining_seconds"] = seconds
            runs.append(row)
    metrics = [
        *probe_metrics(),
        *map(fact_check_metric, config.label_budgets),
        "pretraining_seconds",
        *(f"untrained_{metric}" for metric in probe_metrics()),
        *PAIR_METRICS,
    ]
    comparison = Comparison(
        pd.DataFrame(runs), pd.DataFrame(curves), probe_floors(corpus), budget, 0.0, metrics, pd.DataFrame(electra)
    )
    comparison.seconds = time.perf_counter() - started
    return comparison


# --------------------------------------------------------------------------- the reading


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals overlap; an interval with a missing end (one seed) overlaps everything."""
    if any(pd.isna(value) for value in (*a, *b)):
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def _bounds(table: pd.DataFrame, objective: str, metric: str) -> tuple[float, float]:
    row = table.set_index("objective").loc[objective]
    return row[f"{metric}_low"], row[f"{metric}_high"]


def gap_to(comparison: Comparison, objective: str, reference: str, metric: str) -> tuple[float, float, float]:
    """``objective`` minus ``reference`` on ``metric``, paired by seed: ``(mean, low, high)``, a 95% t-interval."""
    runs = comparison.runs.pivot(index="seed", columns="objective", values=metric)
    differences = (runs[objective] - runs[reference]).dropna()
    low, high = interval(differences.to_numpy())
    return float(differences.mean()), low, high


def compare_sentence(comparison: Comparison, first: str, second: str, metric: str) -> str:
    """"first beats second", "second beats first" when their 95% intervals on ``metric`` do not overlap, else that
    they "cannot be told apart at this budget"."""
    table = comparison.table
    a, b = _bounds(table, first, metric), _bounds(table, second, metric)
    if _overlap(a, b):
        return f"{first} and {second} cannot be told apart at this budget"
    winner, loser = (first, second) if a[0] > b[1] else (second, first)
    return f"{winner} beats {loser}"


def clears(comparison: Comparison, objective: str, metric: str, value: float) -> bool:
    """Whether ``objective``'s whole 95% interval on ``metric`` lies above ``value`` (one seed: never)."""
    low, high = _bounds(comparison.table, objective, metric)
    return not pd.isna(low) and low > value


def probe_reading(comparison: Comparison, probe: str = "held-out", measure: str = "top1") -> str:
    """One line: which objectives' whole interval on ``probe``'s ``measure`` clears the phrasing prior."""
    metric = f"{PROBES[probe]}_{measure}"
    prior = comparison.floor("phrasing prior", probe, measure)
    objectives = list(comparison.table["objective"])
    above = [o for o in objectives if clears(comparison, o, metric, prior)]
    rest = [o for o in objectives if o not in above]
    return (
        f"{probe} probe, {measure}: the whole 95% interval clears the phrasing prior ({prior:.3f}) for "
        f"{', '.join(above) or 'no objective'}; not for {', '.join(rest) or 'none'}."
    )


def pairs_reading(comparison: Comparison) -> str:
    """One line: which objectives prefer the good sentence of the minimal pairs above chance (0.5), whole interval."""
    objectives = list(comparison.table["objective"])
    parts = []
    for metric in PAIR_METRICS:
        above = [o for o in objectives if clears(comparison, o, metric, 0.5)]
        names = ", ".join(above) or "no objective"
        parts.append(f"{metric}: above chance (0.5) with the whole 95% interval for {names}")
    return "zero-shot minimal pairs, one sentence score for every objective; " + "; ".join(parts) + "."


def fact_check_reading(comparison: Comparison, label_budget: int) -> str:
    """One line: which objectives' fine-tuned fact checker clears chance (0.5) with its whole interval."""
    metric = fact_check_metric(label_budget)
    objectives = list(comparison.table["objective"])
    above = [o for o in objectives if clears(comparison, o, metric, 0.5)]
    rest = [o for o in objectives if o not in above]
    return (
        f"fact check with {label_budget} labels: the whole 95% interval clears chance (0.5) for "
        f"{', '.join(above) or 'no objective'}; not for {', '.join(rest) or 'none'}."
    )


def reading(comparison: Comparison, probe: str = "held-out", measure: str = "mrr", reference: str = "mlm") -> list[str]:
    """The results table in sentences: the ranking on ``probe``'s ``measure``, MLM against the phrasing prior, and
    each objective's gap to ``reference`` with its paired 95% interval. "X beats Y" is said only where the two
    objectives' own 95% intervals do not overlap; otherwise they "cannot be told apart at this budget"."""
    metric = f"{PROBES[probe]}_{measure}"
    table = comparison.table.sort_values(f"{metric}_mean", ascending=False)
    seeds = int(table["n"].max())
    sentences = [
        f"Ranked by {probe} {measure} ({seeds} seed(s), mean [95% interval]): "
        + "; ".join(f"{o} {comparison.cell(o, metric)}" for o in table["objective"])
        + "."
    ]
    if reference in set(table["objective"]):
        for which in ("top1", "mrr"):
            name = f"{PROBES[probe]}_{which}"
            prior = comparison.floor("phrasing prior", probe, which)
            verdict = "clears" if clears(comparison, reference, name, prior) else "does not clear"
            sentences.append(
                f"{reference} {verdict} the phrasing prior on {probe} {which}: {comparison.cell(reference, name)} "
                f"against {prior:.3f} (true chance {comparison.floor('true chance', probe, which):.3f})."
            )
        for objective in table["objective"]:
            if objective == reference:
                continue
            mean, low, high = gap_to(comparison, objective, reference, metric)
            sentences.append(
                f"{objective} - {reference} on {probe} {measure}: {with_interval(mean, low, high, 3)}; "
                f"{compare_sentence(comparison, objective, reference, metric)}."
            )
    return sentences


# --------------------------------------------------------------------------- sentence scores; ELECTRA measured


def _content_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: the real tokens other than ``[CLS]`` (first) and ``[SEP]`` (last real)."""
    content = attention_mask.bool().clone()
    content[:, 0] = False
    content[torch.arange(len(content)), attention_mask.sum(1) - 1] = False
    return content


@torch.no_grad()
def sentence_scores(objective: str, model: nn.Module, tokenizer, sentences: list[str]) -> tuple[torch.Tensor, int]:
    """How likely each whole sentence is to ``model``: ``(scores [N], forward rows run)``; higher is better.

    * ``causal``: ``log p(sentence)`` (``sequence_log_likelihood``), one row per sentence;
    * ``mlm``, ``albert``: the pseudo-log-likelihood, the sum over tokens of ``log p(token)`` with that token
      masked, one row per token (Salazar et al., 2020);
    * ``permutation``: the same sum with each token predicted last, from all the others, one row per token;
    * ``electra``: the sum over tokens of the discriminator's ``log p(original)``, one row per sentence.
    """
    device = next(model.parameters()).device
    encoded = encode_batch(tokenizer, sentences)
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    was_training = model.training
    model.eval()
    if objective == "causal":
        scores, rows = sequence_log_likelihood(model, ids, mask).float(), len(ids)
    elif objective == "electra":
        logits = model.discriminator(ids, mask).float()  # [N, L]: "replaced" logits
        scores, rows = (F.logsigmoid(-logits) * _content_positions(mask)).sum(1), len(ids)
    elif objective in ("mlm", "albert", "permutation"):
        sentence, position = _content_positions(mask).nonzero(as_tuple=True)  # one row per (sentence, token)
        rows_ids, rows_mask = ids[sentence].clone(), mask[sentence]
        targets = rows_ids[torch.arange(len(sentence)), position]
        if objective == "permutation":
            length = ids.shape[1]
            positions = torch.arange(length, device=device).expand_as(rows_ids)
            keys = torch.where(rows_mask.bool(), positions, positions + 2 * length)
            order = torch.where(positions == position[:, None], length, keys).argsort(dim=1)  # the token last
            logits, _ = model(rows_ids, rows_mask, order, 1)  # [S, V]
        else:
            rows_ids[torch.arange(len(sentence)), position] = tokenizer.token_to_id("[MASK]")
            logits = model(rows_ids, rows_mask)[torch.arange(len(sentence)), position]  # [S, V]
        picked = logits.float().log_softmax(-1).gather(1, targets[:, None]).squeeze(1)  # [S]
        scores = torch.zeros(len(ids), device=device).index_add_(0, sentence, picked)
        rows = len(sentence)
    else:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    model.train(was_training)
    return scores.cpu(), rows


def agreement_pairs() -> list[tuple[str, str]]:
    """Subject-verb agreement minimal pairs across an attractor of the other number: ``(good, bad)``.

    "the dog near the trees is sleeping ." against "... are sleeping .": the noun next to the verb has the
    wrong number, so only a model that links the verb to the subject prefers the good sentence.
    """
    singular = [p for p in PLACES if not p.endswith("s")]
    plural = [p for p in PLACES if p.endswith("s")]
    pairs = []
    for (noun, nouns), (verb, verbs) in ((n, v) for n in NOUNS for v in VERBS):
        for place in plural:
            pairs.append((f"the {noun} near the {place} {verb} .", f"the {noun} near the {place} {verbs} ."))
        for place in singular:
            pairs.append((f"the {nouns} near the {place} {verbs} .", f"the {nouns} near the {place} {verb} ."))
    return pairs


def capital_pairs(probes: list[FactProbe], seed: int = 0) -> list[tuple[str, str]]:
    """``(good, bad)``: each probe with its capital, and with another capital drawn with ``seed``."""
    rng = random.Random(seed)
    cities = sorted({city for _, city, _ in COUNTRIES})
    pairs = []
    for probe in probes:
        wrong = rng.choice([city for city in cities if city != probe.answer])
        pairs.append((probe.text.replace("[MASK]", probe.answer), probe.text.replace("[MASK]", wrong)))
    return pairs


def minimal_pair_accuracy(
    objective: str, model: nn.Module, tokenizer, pairs: list[tuple[str, str]]
) -> tuple[float, float]:
    """Share of ``pairs`` whose good sentence ``sentence_scores`` higher (ties half), and forward rows per sentence."""
    good, good_rows = sentence_scores(objective, model, tokenizer, [g for g, _ in pairs])
    bad, bad_rows = sentence_scores(objective, model, tokenizer, [b for _, b in pairs])
    accuracy = float((good > bad).double().mean() + 0.5 * (good == bad).double().mean())
    return accuracy, (good_rows + bad_rows) / (2 * len(pairs))


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores [N]`` for binary ``labels [N]``: the chance that a random positive
    outscores a random negative (ties half); ``nan`` without both classes."""
    positive, negative = scores[labels.bool()].double(), scores[~labels.bool()].double()
    if len(positive) == 0 or len(negative) == 0:
        return math.nan
    greater = (positive[:, None] > negative[None]).double().mean()
    tied = (positive[:, None] == negative[None]).double().mean()
    return float(greater + tied / 2)


@torch.no_grad()
def electra_measurements(
    model: ElectraForPretraining, tokenizer, corpus: Corpus, config: ComparisonConfig, seed: int = 0
) -> dict:
    """What ELECTRA's two networks have learned, on training sentences:

    * ``generator_capital_accuracy``: the generator's argmax is the right capital where the capital is ``[MASK]``ed
      (the seen probes);
    * ``replaced_capitals_are_capitals``: of the capitals the generator replaced with a sample, the share replaced by
      another capital (a fake only the fact can expose);
    * ``discriminator_auc``: AUC of the discriminator's "replaced" logit on the real tokens of ``config.batch_size``
      training sentences corrupted as in pretraining;
    * ``discriminator_capital_auc``: AUC of the discriminator's "replaced" logit at the capital slot, between the
      seen probes with their own capital and the same sentences where the generator's sample replaced it.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    _, candidate_ids = capital_candidates(tokenizer)
    candidate_ids = candidate_ids.to(device)
    batch = probe_batch(tokenizer, corpus.seen_probes, device)
    generator_logits = model.generator(batch["input_ids"], batch["attention_mask"])[batch["blank"]]  # [P, V]
    accuracy = float((generator_logits.argmax(-1) == batch["answer"]).double().mean())
    samples = sample_replacements(generator_logits, generator)  # [P]
    replaced = samples != batch["answer"]
    original, corrupted = batch["input_ids"].clone(), batch["input_ids"].clone()
    original[batch["blank"]], corrupted[batch["blank"]] = batch["answer"], samples
    original_logits = model.discriminator(original, batch["attention_mask"])[batch["blank"]]  # [P]
    corrupted_logits = model.discriminator(corrupted, batch["attention_mask"])[batch["blank"]][replaced]  # [R]
    capital_labels = torch.cat([torch.zeros(len(original_logits)), torch.ones(len(corrupted_logits))])
    is_capital = (samples[:, None] == candidate_ids[None]).any(1)
    encoded = encode_batch(tokenizer, corpus.train[: config.batch_size])
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    options = masker_ids(tokenizer) | ELECTRA_MASKING | dict(mlm_probability=config.mlm_probability)
    masked_ids, labels = mask_tokens(ids.cpu(), **options, generator=torch.Generator().manual_seed(seed))
    output = model(ids, masked_ids.to(device), labels.to(device), mask, generator=generator)
    logits = model.discriminator(output.corrupted_ids, mask)
    real = mask.bool()
    model.train(was_training)
    return dict(
        generator_capital_accuracy=accuracy,
        replaced_capitals_are_capitals=float(is_capital[replaced].double().mean()) if replaced.any() else math.nan,
        discriminator_auc=auc(logits[real].cpu(), output.replaced[real].cpu()),
        discriminator_capital_auc=auc(torch.cat([original_logits, corrupted_logits]).cpu(), capital_labels),
    )
