"""Lab 5's experiment: five pretraining objectives on one encoder, at equal training compute.

    comparison = compare_objectives(comparison_config())     # sizes from the profile (ci, cpu, gpu)
    comparison.table                                         # one row per objective: mean and sd over seeds
    comparison.curves                                        # probe accuracy against training FLOPs

Every objective trains the same post-LN encoder (width, depth, heads, feed-forward) on the Lab 2
corpus for the same budget of training FLOPs (``course_utils.models.flops``): the budget is
what MLM spends in ``budget_mlm_steps`` steps, and each objective gets ``budget // its FLOPs per
step`` steps. Each pretrained encoder is then measured on

* **the fact probe**: Lab 2's held-out phrasings with the capital blanked, answered as a
  multiple choice among the 24 capitals so that every objective answers the same question
  (``probe_accuracy``; chance is 1/24), and the same question on capital phrasings that occur in
  training (``seen_probe_accuracy``): stored the fact, against reads it back through a new sentence;
* **a downstream task** (``fact_check_task``): is a sentence a planted fact or a corrupted one
  (a wrong capital or language)? The encoder is fine-tuned from a few labelled sentences (the
  label budgets) in some phrasings and tested on phrasings that fine-tuning never shows;
* its **parameter count** and its **pretraining wall-clock time**.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from course_utils.device import get_device, seed_everything
from course_utils.experiments.core import (
    FineTuning,
    finetuned_accuracy,
    mean_sd,
    require_ints,
    require_subset,
    sized,
    steps_for_budget,
    summarise,
)
from course_utils.masking import mask_tokens
from course_utils.models.albert import AlbertConfig, AlbertForMaskedLM
from course_utils.models.bert import BertConfig, BertForMaskedLM
from course_utils.models.causal_lm import CausalLM, sequence_log_likelihood
from course_utils.models.electra import ElectraForPretraining
from course_utils.models.flops import OBJECTIVES, training_flops_per_step
from course_utils.models.permutation_lm import PermutationLM, sample_factorization_order
from course_utils.text import (
    CAPITAL_TEMPLATES,
    COUNTRIES,
    LANGUAGE_TEMPLATES,
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


@dataclass
class ComparisonConfig:
    """Every size of the comparison; ``comparison_config()`` picks them by profile."""

    objectives: tuple[str, ...] = OBJECTIVES
    seeds: tuple[int, ...] = (0, 1, 2)
    # the data
    num_sentences: int = 20_000
    tokenizer_vocab_size: int = 1000
    # the encoder every objective trains, and what each objective adds
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    albert_embedding_size: int = 16
    generator_width_fraction: float = 0.25
    mlm_probability: float = 0.15
    num_predict: int = 2  # permutation LM targets per sentence (~1/6 of its tokens, as XLNet's K = 6)
    # pretraining at equal FLOPs
    batch_size: int = 64
    budget_mlm_steps: int = 1100  # the FLOP budget: what MLM spends in this many steps
    learning_rate: float = 5e-3
    probe_evaluations: int = 4  # probe accuracy this many times during pretraining, for the curves
    # fine-tuning
    label_budgets: tuple[int, ...] = (64, 320)  # labelled sentences, out of the 336 in FactCheckTask.train
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


def comparison_config(profile: str | None = None, **overrides) -> ComparisonConfig:
    """The sizes for ``profile`` (default: the current one), with ``overrides`` applied."""
    # fmt: off
    return sized(
        ComparisonConfig, profile, overrides,
        ci=dict(
            num_sentences=1_000, batch_size=16, budget_mlm_steps=10, probe_evaluations=2, seeds=(0,),
            hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, albert_embedding_size=16,
            label_budgets=(8, 16), finetune=FineTuning(max_steps=10, eval_every=5, patience=5, lr=2e-3, batch_size=8),
        ),
        cpu=dict(),
        gpu=dict(
            num_sentences=100_000, batch_size=128, budget_mlm_steps=3_000, learning_rate=2e-3,
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
            order = sample_factorization_order(batch["attention_mask"])
            return model.permutation_loss(batch["input_ids"], batch["attention_mask"], order, config.num_predict)

        return permutation_step
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def predictions_per_sequence(
    objective: str, config: ComparisonConfig, attention_mask: torch.Tensor, num_special: int = 2
) -> float:
    """Mean positions per sequence that reach the vocabulary head (the FLOP count needs it).

    MLM-style: ``mlm_probability`` of the real tokens other than ``[CLS]`` and ``[SEP]``; causal:
    every real token after the first; permutation: ``min(num_predict, n - 1)``.
    """
    lengths = attention_mask.sum(1).double()  # [N]
    if objective in ("mlm", "albert", "electra"):
        return float(config.mlm_probability * (lengths - num_special).clamp(min=0).mean())
    if objective == "causal":
        return float((lengths - 1).clamp(min=0).mean())
    if objective == "permutation":
        return float((lengths - 1).clamp(min=0, max=config.num_predict).mean())
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


def probe_accuracy(objective: str, model: nn.Module, tokenizer, probes: list[FactProbe], batch_size: int = 64) -> float:
    """Fraction of ``probes`` whose best-scored capital (``candidate_scores``) is the answer."""
    if not probes:
        raise ValueError("probes must be a non-empty list of FactProbe")
    device = next(model.parameters()).device
    _, candidate_ids = capital_candidates(tokenizer)
    candidate_ids = candidate_ids.to(device)
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(probes), batch_size):
        batch = probe_batch(tokenizer, probes[start : start + batch_size], device)
        best = candidate_scores(objective, model, batch, candidate_ids).argmax(1)  # [B]
        correct += int((candidate_ids[best] == batch["answer"]).sum())
    model.train(was_training)
    return correct / len(probes)


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
    """Labelled sentences as ``SentenceClassifier`` inputs: ``input_ids`` and ``attention_mask`` ``[N, length]``, ``labels`` ``[N]``."""
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


@dataclass
class Comparison:
    """What ``compare_objectives`` measured; ``table`` summarises ``runs`` over seeds."""

    runs: pd.DataFrame  # one row per (objective, seed)
    curves: pd.DataFrame  # objective, seed, step, training_flops, probe_accuracy, seen_probe_accuracy: during pretraining
    budget_flops: float
    seconds: float  # the whole comparison, wall-clock
    metrics: list[str] = field(default_factory=list)  # the columns of runs that vary over seeds

    @property
    def table(self) -> pd.DataFrame:
        """One row per objective: parameters, steps, FLOPs per step, then each metric's mean, sd and interval."""
        return summarise(self.runs, "objective", self.metrics, fixed=["parameters", "steps", "flops_per_step"])

    def formatted(self) -> pd.DataFrame:
        """``table`` for reading: ``mean±sd`` strings, FLOPs in GFLOPs, parameters in thousands."""
        table = self.table
        shown = pd.DataFrame({"objective": table["objective"]})
        shown["parameters (k)"] = (table["parameters"] / 1e3).round(1)
        shown["steps"] = table["steps"]
        shown["GFLOPs/step"] = (table["flops_per_step"] / 1e9).round(3)
        for metric in self.metrics:
            shown[metric] = [mean_sd(m, s) for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_sd"])]
        return shown


def fact_check_metric(label_budget: int) -> str:
    """The column name of the downstream accuracy with ``label_budget`` labels."""
    return f"fact_check_{label_budget}"


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
) -> tuple[nn.Module, list[dict], float]:
    """One pretraining run: ``(model, probe evaluations, seconds)``; the seconds leave the probe evaluations out.

    Both probes (``corpus.probes``, ``corpus.seen_probes``) are evaluated ``config.probe_evaluations`` times
    along the way and at the end, for the curves.
    """
    seed_everything(seed)
    model = build_model(objective, config, bert_config)
    evaluation_seconds = 0.0

    def evaluate(model):
        nonlocal evaluation_seconds
        begin = time.perf_counter()
        accuracies = {
            "probe_accuracy": probe_accuracy(objective, model, tokenizer, corpus.probes),
            "seen_probe_accuracy": probe_accuracy(objective, model, tokenizer, corpus.seen_probes),
        }
        evaluation_seconds += time.perf_counter() - begin
        return accuracies

    schedule = TrainConfig(
        steps=steps, lr=config.learning_rate, live_plot=False, eval_every=max(1, steps // config.probe_evaluations)
    )
    loader = batches(data, config.batch_size, seed=seed)
    begin = time.perf_counter()
    history = fit(model, loader, pretraining_loss_fn(objective, config, tokenizer), schedule, device, evaluate)
    return model, history.evaluations, time.perf_counter() - begin - evaluation_seconds


def compare_objectives(config: ComparisonConfig | None = None, device: torch.device | None = None) -> Comparison:
    """Pretrain every objective in ``config.objectives`` for each seed at equal FLOPs, then probe and fine-tune it."""
    started = time.perf_counter()
    config = config or comparison_config()
    device = device or get_device()
    corpus = make_corpus(config.num_sentences, seed=0)
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
    runs, curves = [], []
    for seed in config.seeds:
        for objective in config.objectives:
            per_step = flops_per_step(objective)
            steps = steps_for_budget(budget, per_step)
            model, evaluations, seconds = pretrain(
                objective, config, bert_config, steps, train_data, tokenizer, corpus, seed, device
            )
            for evaluation in evaluations:
                curves.append(
                    dict(
                        objective=objective,
                        seed=seed,
                        step=evaluation["step"],
                        training_flops=evaluation["step"] * per_step,
                        probe_accuracy=evaluation["probe_accuracy"],
                        seen_probe_accuracy=evaluation["seen_probe_accuracy"],
                    )
                )
            row = dict(
                objective=objective,
                seed=seed,
                parameters=sum(p.numel() for p in model.parameters()),
                steps=steps,
                flops_per_step=per_step,
                probe_accuracy=evaluations[-1]["probe_accuracy"],
                seen_probe_accuracy=evaluations[-1]["seen_probe_accuracy"],
                pretraining_seconds=seconds,
            )
            for label_budget in config.label_budgets:
                row[fact_check_metric(label_budget)] = finetune_accuracy(
                    objective, model, tokenizer, task, label_budget, config.finetune, seed, device
                )
            runs.append(row)
    metrics = ["probe_accuracy", "seen_probe_accuracy", *map(fact_check_metric, config.label_budgets), "pretraining_seconds"]
    return Comparison(pd.DataFrame(runs), pd.DataFrame(curves), budget, time.perf_counter() - started, metrics)
