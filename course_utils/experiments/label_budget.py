"""Lab 4's label-budget experiment: does masked-event pretraining help an outcome classifier, and at which budgets?

    runs = label_budget_experiment(pretrained.behrt, vocabulary, pool_sequences, pool_outcomes,
                                   test_sequences, test_outcomes, budgets=[100, 300, 1000], repeats=5)
    summarise_label_budget(runs)          # mean ± sd over the subsamples, per budget and model

Each budget is a number of labelled patients, all of them counted: for every repeat, a stratified
subsample of that many patients from the labelled pool (the whole pool at the pool's size) is split,
stratified, into a fine-tuning part and a **tuning part** (``FineTuning.tuning_fraction``). The
models, all scored on the test patients, which no choice ever looks at:

* ``pretrained + fine-tuned``: the pretrained encoder with a fresh ``[CLS]`` head;
* ``from scratch``: the same model from random weights, with the same recipe;
* ``bag of codes``: logistic regression on code counts, its regularisation chosen on the tuning part;
* ``oracle``: the true risk, when the caller has it (no model can expect to beat it).

Both BEHRT arms train until the tuning AUROC stops improving (``fit`` with ``monitor="auroc"``): an
evaluation every ``eval_every`` steps, a stop after ``patience`` evaluations without a better one,
and the weights of the best evaluation are the ones scored.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from course_utils.device import get_device, pin_memory, seed_everything
from course_utils.ehr.batching import EHRDataset, LengthBucketSampler, collate_ehr
from course_utils.ehr.sequences import SPECIAL_TOKENS, EHRSequence, Vocabulary
from course_utils.experiments.core import FineTuning, budget_split, fine_tune, mean_sd, summarise
from course_utils.models.behrt import Behrt, BehrtConfig, BehrtForOutcome, outcome_loss, predict_outcome
from course_utils.progress import tqdm

PRETRAINED, SCRATCH, BAG_OF_CODES, ORACLE = "pretrained + fine-tuned", "from scratch", "bag of codes", "oracle"
MODELS = (PRETRAINED, SCRATCH, BAG_OF_CODES, ORACLE)
METRICS = ("auroc", "auprc")
BAG_OF_CODES_C = (0.01, 0.1, 1.0)  # the bag of codes' inverse regularisation strengths, chosen on the tuning part


def _codes_only(tokens: Sequence[str]) -> list[str]:
    """The bag of codes' analyzer: a sequence's tokens without [CLS], [SEP] and the other special tokens."""
    return [token for token in tokens if token not in SPECIAL_TOKENS]


def bag_of_codes(c: float):
    """Code counts (special tokens left out), scaled to [0, 1] per code, then L2-regularised logistic regression."""
    return make_pipeline(
        CountVectorizer(analyzer=_codes_only), MaxAbsScaler(), LogisticRegression(C=c, max_iter=2000)
    )


def _loader(dataset: EHRDataset, batch_size: int, shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    sampler = LengthBucketSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate_ehr, pin_memory=pin_memory()
    )


def _scores(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    return {"auroc": roc_auc_score(y, probabilities), "auprc": average_precision_score(y, probabilities)}


def _fine_tune(
    encoder: Behrt | None,
    config: BehrtConfig,
    train_set: EHRDataset,
    tuning_set: EHRDataset,
    recipe: FineTuning,
    seed: int,
    device: torch.device,
) -> tuple[BehrtForOutcome, int, int]:
    """Train a ``[CLS]`` classifier with early stopping on tuning AUROC -> ``(model, best step, steps run)``."""
    seed_everything(seed)
    model = BehrtForOutcome(config, encoder=encoder)
    tuning_loader = _loader(tuning_set, 256, shuffle=False)

    def tuning_auroc(model: BehrtForOutcome) -> dict[str, float]:
        probabilities, y = predict_outcome(model, tuning_loader, device)
        return {"auroc": roc_auc_score(y, probabilities)}

    history = fine_tune(
        model,
        _loader(train_set, recipe.batch_size, shuffle=True, seed=seed),
        outcome_loss,
        recipe,
        device,
        evaluate=tuning_auroc,
        monitor="auroc",
    )
    return model, history.best_step, history.steps[-1]


def label_budget_experiment(
    pretrained: Behrt,
    vocabulary: Vocabulary,
    pool_sequences: Sequence[EHRSequence],
    pool_outcomes: Sequence[bool],
    test_sequences: Sequence[EHRSequence],
    test_outcomes: Sequence[bool],
    budgets: Sequence[int],
    repeats: int,
    recipe: FineTuning | None = None,
    test_oracle: Sequence[float] | None = None,
    device: torch.device | None = None,
    bag_of_codes_c: Sequence[float] = BAG_OF_CODES_C,
    baselines: bool = True,
) -> pd.DataFrame:
    """Score every model at every budget on ``repeats`` labelled subsamples (the same ones for every model).

    ``pretrained`` is the pretrained encoder (copied, never changed); the pool holds the labelled training
    patients, the test patients are scored only. A budget equal to the pool's size takes the whole pool, so
    its repeats differ only in the tuning split and the random seed. Returns one row per (budget, repeat, model)
    with columns ``budget, repeat, model, auroc, auprc, best_step, steps`` (the last two: the evaluation whose
    weights were kept and the steps run, for the BEHRT arms); ``oracle`` rows score ``test_oracle`` when it is
    given. ``baselines=False`` scores the pretrained arm only (the scratch, bag-of-codes and oracle rows do not
    depend on ``pretrained``: an experiment comparing two pretrainings needs them once).
    """
    recipe = recipe or FineTuning()
    device = device or get_device()
    pool_outcomes = np.asarray(pool_outcomes, dtype=bool)
    test_outcomes = np.asarray(test_outcomes, dtype=bool)
    if len(pool_sequences) != len(pool_outcomes) or len(test_sequences) != len(test_outcomes):
        raise ValueError("pool_sequences/pool_outcomes and test_sequences/test_outcomes must match in length")
    if test_oracle is not None and len(test_oracle) != len(test_outcomes):
        raise ValueError(f"test_oracle must hold one probability per test patient, got {len(test_oracle)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    minority_share = min(pool_outcomes.mean(), 1.0 - pool_outcomes.mean()) if len(pool_outcomes) else 0.0
    smaller_part = min(recipe.tuning_fraction, 1.0 - recipe.tuning_fraction)
    for budget in budgets:
        if not isinstance(budget, (int, np.integer)) or not 0 < budget <= len(pool_outcomes):
            raise ValueError(f"budgets must be ints in [1, {len(pool_outcomes)}] (the pool's size), got {budget!r}")
        if budget * smaller_part * minority_share < 2:
            raise ValueError(
                f"budget {budget} is too small: its fine-tuning and tuning parts need two patients of each class"
            )

    config = pretrained.config
    test_set = EHRDataset(list(test_sequences), vocabulary, config.max_len, test_outcomes)
    test_loader = _loader(test_set, 256, shuffle=False)
    test_tokens = [sequence.tokens for sequence in test_sequences]
    rows = []
    draws = [(budget, repeat) for budget in budgets for repeat in range(repeats)]
    for budget, repeat in tqdm(draws, desc="label budgets"):
        fine_tuning, tuning = budget_split(pool_outcomes, int(budget), recipe.tuning_fraction, seed=repeat)
        parts = {}
        for name, indices in (("fine-tuning", fine_tuning), ("tuning", tuning)):
            parts[name] = EHRDataset(
                [pool_sequences[i] for i in indices], vocabulary, config.max_len, pool_outcomes[indices]
            )
        base = {"budget": int(budget), "repeat": repeat}
        arms = (
            ((PRETRAINED, copy.deepcopy(pretrained)), (SCRATCH, None))
            if baselines
            else ((PRETRAINED, copy.deepcopy(pretrained)),)
        )
        for name, encoder in arms:
            model, best_step, steps = _fine_tune(
                encoder, config, parts["fine-tuning"], parts["tuning"], recipe, repeat, device
            )
            probabilities, y = predict_outcome(model, test_loader, device)  # in the loader's (bucketed) order
            rows.append({**base, "model": name, **_scores(y, probabilities), "best_step": best_step, "steps": steps})
        if not baselines:
            continue
        train_tokens = [pool_sequences[i].tokens for i in fine_tuning]
        tuning_tokens = [pool_sequences[i].tokens for i in tuning]
        fitted = [bag_of_codes(c).fit(train_tokens, pool_outcomes[fine_tuning]) for c in bag_of_codes_c]
        tuning_auroc = [roc_auc_score(pool_outcomes[tuning], m.predict_proba(tuning_tokens)[:, 1]) for m in fitted]
        best = fitted[int(np.argmax(tuning_auroc))]
        rows.append({**base, "model": BAG_OF_CODES, **_scores(test_outcomes, best.predict_proba(test_tokens)[:, 1])})
        if test_oracle is not None:
            rows.append({**base, "model": ORACLE, **_scores(test_outcomes, np.asarray(test_oracle, dtype=float))})
    return pd.DataFrame(rows, columns=["budget", "repeat", "model", *METRICS, "best_step", "steps"])


def summarise_label_budget(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """``mean±sd`` over the subsamples (sample sd), one row per budget, one column per (metric, model)."""
    summary = summarise(runs, ["budget", "model"], metrics)
    models = [model for model in MODELS if model in set(runs["model"])]
    models += [model for model in dict.fromkeys(runs["model"]) if model not in models]
    table = {
        (metric.upper(), model): {
            row.budget: mean_sd(getattr(row, f"{metric}_mean"), getattr(row, f"{metric}_sd"))
            for row in summary[summary["model"] == model].itertuples()
        }
        for metric in metrics
        for model in models
    }
    budgets = sorted(set(runs["budget"]))
    return pd.DataFrame(table, index=pd.Index(budgets, name="labelled patients")).fillna("")
