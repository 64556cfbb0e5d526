"""What every experiment of the course shares: sizes by profile, FLOP budgets, early-stopped fine-tuning
at a label budget, and the summary over seeds.

    config = sized(MyConfig, profile=None, overrides={}, ci=dict(...), cpu=dict(), gpu=dict(...))
    steps = steps_for_budget(budget_flops, flops_per_step)              # equal compute, not equal steps
    fine_tuning, tuning = budget_split(labels, budget=64, tuning_fraction=0.25, seed=0)
    history = fine_tune(classifier, batches, loss_fn, recipe, device, evaluate, monitor="accuracy")
    table = summarise(runs, by="method", metrics=["probe_accuracy"])    # mean, sd, n and a 95% interval

An experiment module (``label_budget``, ``objective_comparison``, ``image_pretraining``,
``record_pretraining``) builds its models and data and calls these; a change to how fine-tuning,
budgets or summaries work is made here once. FLOPs are counted by ``course_utils.models.flops``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, is_dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.model_selection import train_test_split
from torch import nn

from course_utils.device import by_profile
from course_utils.train import History, TrainConfig, batches, fit

CONFIDENCE = 0.95  # the level of every interval over seeds or subsamples


def sized(config_class: type, profile: str | None, overrides: dict, *, ci: dict, cpu: dict, gpu: dict):
    """``config_class(**sizes)`` with the sizes of ``profile`` (default: the current one),
    ``overrides`` applied last."""
    return config_class(**(by_profile(profile=profile, ci=ci, cpu=cpu, gpu=gpu) | overrides))


def require_subset(name: str, chosen: Sequence[str], allowed: Sequence[str]) -> None:
    """``chosen`` must be a non-empty tuple of names from ``allowed`` (a ``ValueError`` naming ``name`` otherwise)."""
    if not chosen or any(item not in allowed for item in chosen):
        raise ValueError(f"{name} must be a non-empty subset of {tuple(allowed)}, got {chosen!r}")


def require_ints(name: str, values: Sequence[int], minimum: int, why: str = "") -> None:
    """``values`` must be a non-empty tuple of ints ``>= minimum`` (bools refused); ``why`` explains the minimum."""
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be a non-empty tuple of ints >= {minimum}{reason}, got {values!r}")


def steps_for_budget(budget_flops: float, flops_per_step: float) -> int:
    """``floor(budget / flops_per_step)``, at least 1
    (a hair of tolerance so the budget's own model divides exactly)."""
    if not flops_per_step > 0:
        raise ValueError(f"flops_per_step must be > 0, got {flops_per_step!r}")
    return max(1, math.floor(budget_flops / flops_per_step + 1e-6))


@dataclass
class FineTuning:
    """How a pretrained encoder is fine-tuned at a label budget, the same for every arm of an experiment.

    Training stops after ``patience`` evaluations (every ``eval_every`` steps, on the tuning part)
    without a better score, and keeps the weights of the best one; ``max_steps`` is a ceiling.
    """

    max_steps: int = 1000
    eval_every: int = 10
    patience: int = 6
    lr: float = 1e-3
    warmup_steps: int = 20  # capped at max_steps
    batch_size: int = 32
    tuning_fraction: float = 0.25  # share of each labelled subsample held out for early stopping

    def __post_init__(self):
        for name in ("max_steps", "eval_every", "patience", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative int, got {self.warmup_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 < self.tuning_fraction < 1.0:
            raise ValueError(f"tuning_fraction must be in (0, 1), got {self.tuning_fraction}")


def budget_split(labels, budget: int, tuning_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``labels`` ``[N]`` of a subsample of ``budget`` examples, split into ``(fine_tuning, tuning)``.

    Both draws are stratified by label where every class can be represented (otherwise plain random);
    ``budget == N`` takes every example. Deterministic in ``seed``.
    """
    labels = np.asarray(labels)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 2 <= budget <= len(labels):
        raise ValueError(f"budget must be an int in [2, {len(labels)}] (the labelled examples), got {budget!r}")
    pool = np.arange(len(labels))
    classes = len(np.unique(labels))
    if budget == len(pool):
        chosen = pool
    else:
        stratify = labels if min(budget, len(pool) - budget) >= classes else None
        chosen = train_test_split(pool, train_size=int(budget), stratify=stratify, random_state=seed)[0]
    tuning_size = max(1, min(len(chosen) - 1, math.ceil(tuning_fraction * len(chosen))))  # as scikit-learn rounds
    _, counts = np.unique(labels[chosen], return_counts=True)
    feasible = counts.min() >= 2 and min(tuning_size, len(chosen) - tuning_size) >= len(counts)
    fine_tuning, tuning = train_test_split(
        chosen, test_size=tuning_size, stratify=labels[chosen] if feasible else None, random_state=seed
    )
    return fine_tuning, tuning


def fine_tune(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    recipe: FineTuning,
    device: torch.device,
    evaluate: Callable[[nn.Module], dict[str, float]],
    monitor: str,
) -> History:
    """``fit`` with ``recipe``'s schedule and early stopping on ``evaluate()[monitor]``; the best weights are kept."""
    schedule = TrainConfig(
        steps=recipe.max_steps,
        lr=recipe.lr,
        warmup_steps=min(recipe.warmup_steps, recipe.max_steps),
        eval_every=recipe.eval_every,
        patience=recipe.patience,
        live_plot=False,
    )
    return fit(model, batches, loss_fn, schedule, device, evaluate=evaluate, monitor=monitor)


def finetuned_accuracy(
    classifier: nn.Module,
    train: dict[str, torch.Tensor],
    test: dict[str, torch.Tensor],
    label_budget: int,
    recipe: FineTuning,
    seed: int,
    device: torch.device,
) -> float:
    """Test accuracy of ``classifier`` after fine-tuning it on ``label_budget`` labelled examples of ``train``.

    ``train`` and ``test`` hold the classifier's keyword inputs (``[N, ...]`` each) and ``labels`` ``[N]``;
    ``classifier(**inputs)`` gives logits ``[B, classes]``. The budget is drawn by ``budget_split`` (``seed``),
    its tuning part decides when to stop (accuracy), the rest trains; the classifier keeps its best weights.
    """
    available = len(train["labels"])
    if isinstance(label_budget, bool) or not isinstance(label_budget, int) or not 4 <= label_budget <= available:
        raise ValueError(
            f"label_budget must be an int in [4, {available}] (the labelled examples), got {label_budget!r}"
        )
    fine_tuning, tuning = budget_split(train["labels"].numpy(), label_budget, recipe.tuning_fraction, seed)
    rows = lambda indices: {key: value[torch.as_tensor(indices)] for key, value in train.items()}  # noqa: E731
    loader = batches(rows(fine_tuning), min(recipe.batch_size, len(fine_tuning)), seed=seed)
    tuning_data = rows(tuning)

    def loss_fn(model, batch):
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        return F.cross_entropy(model(**inputs).float(), batch["labels"])

    fine_tune(
        classifier.to(device),
        loader,
        loss_fn,
        recipe,
        device,
        evaluate=lambda model: {"accuracy": accuracy(model, tuning_data)},
        monitor="accuracy",
    )
    return accuracy(classifier, test)


@torch.no_grad()
def accuracy(classifier: nn.Module, data: dict[str, torch.Tensor], batch_size: int = 512) -> float:
    """Share of ``data["labels"]`` ``[N]`` that ``classifier(**inputs)`` gets right, in eval mode,
    ``batch_size`` rows at a time."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    inputs = {key: value for key, value in data.items() if key != "labels"}
    predictions = [
        classifier(**{key: value[start : start + batch_size].to(device) for key, value in inputs.items()}).argmax(1)
        for start in range(0, len(data["labels"]), batch_size)
    ]
    classifier.train(was_training)
    return float((torch.cat(predictions).cpu() == data["labels"]).float().mean())


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval ``(low, high)`` for the mean of ``values``; ``(nan, nan)`` for fewer than two."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def summarise(
    runs: pd.DataFrame, by: str | list[str], metrics: Sequence[str], fixed: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per group of ``runs``: the ``fixed`` columns (the same in every run of a group), then per metric
    its ``_mean``, ``_sd`` (sample sd), ``_low`` and ``_high`` (a ``CONFIDENCE`` t-interval of the mean), and ``n``.

    Groups keep the order of their first appearance in ``runs``.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = {*keys, *metrics, *fixed} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lacks the columns {sorted(missing)}")
    groups = runs.groupby(keys, sort=False)
    columns = {name: groups[name].first() for name in fixed}
    for metric in metrics:
        columns[f"{metric}_mean"] = groups[metric].mean()
        columns[f"{metric}_sd"] = groups[metric].std(ddof=1)
        bounds = groups[metric].apply(lambda values: interval(values.dropna()))
        columns[f"{metric}_low"] = bounds.map(lambda bound: bound[0])
        columns[f"{metric}_high"] = bounds.map(lambda bound: bound[1])
    columns["n"] = groups.size()
    return pd.DataFrame(columns).reset_index()


def with_interval(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``0.840 [0.473, 1.207]``; the mean alone when there is no interval (one seed)."""
    if pd.isna(low) or pd.isna(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    """``0.812±0.013`` as one token; the mean alone when there is no sd (one run)."""
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f}±{sd:.{digits}f}"


def listing(config, width: int = 96, indent: str = "") -> str:
    """A config dataclass as a few short lines for a notebook: its class name, then its ``name=value`` fields
    packed into lines of at most ``width`` characters (a field longer than that gets a line of its own); a
    field that is itself a dataclass follows as its own indented listing."""
    if not is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config must be a dataclass instance, got {type(config).__name__}")
    nested, lines, line = [], [f"{indent}{type(config).__name__}"], ""
    for item in fields(config):
        value = getattr(config, item.name)
        if is_dataclass(value) and not isinstance(value, type):
            nested.append(f"{indent}  {item.name}: " + listing(value, width, indent + "  ").lstrip())
            continue
        text = f"{item.name}={value!r}"
        if line and len(indent) + 2 + len(line) + 2 + len(text) > width:
            lines.append(f"{indent}  {line}")
            line = ""
        line = f"{line}, {text}" if line else text
    if line:
        lines.append(f"{indent}  {line}")
    return "\n".join(lines + nested)


def for_reading(summary: pd.DataFrame, keep: Sequence[str], metrics: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """A ``summarise`` table narrow enough for a notebook: the ``keep`` columns, then per metric its mean and its
    95% interval as one token (``0.526–0.681``; empty where there is none, as for one run), then ``n``."""
    missing = {*keep, *(f"{m}_{part}" for m in metrics for part in ("mean", "low", "high"))} - set(summary.columns)
    if missing:
        raise ValueError(f"summary must be a summarise() table; it lacks the columns {sorted(missing)}")
    shown = summary[list(keep)].copy()
    for metric in metrics:
        shown[metric] = summary[f"{metric}_mean"].round(digits)
        shown[f"{metric} 95% CI"] = [
            "" if pd.isna(low) else f"{low:.{digits}f}–{high:.{digits}f}"
            for low, high in zip(summary[f"{metric}_low"], summary[f"{metric}_high"])
        ]
    if "n" in summary.columns:
        shown["n"] = summary["n"]
    return shown
