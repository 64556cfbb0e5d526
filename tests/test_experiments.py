"""The shared experiment core: sizes by profile, FLOP budgets, label-budget splits, fine-tuning and summaries."""

import ast
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from course_utils.experiments.core import (
    FineTuning,
    budget_split,
    fine_tune,
    interval,
    mean_sd,
    sized,
    steps_for_budget,
    summarise,
)
from course_utils.train import batches

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"


@dataclass
class Sizes:
    width: int = 8
    steps: int = 10


def test_sized_takes_the_profile_then_the_overrides():
    profiles = dict(ci=dict(width=2), cpu=dict(), gpu=dict(width=64, steps=100))
    assert sized(Sizes, "ci", {}, **profiles) == Sizes(width=2)
    assert sized(Sizes, "cpu", {}, **profiles) == Sizes()
    assert sized(Sizes, "gpu", dict(steps=3), **profiles) == Sizes(width=64, steps=3)
    with pytest.raises(ValueError, match="profile"):
        sized(Sizes, "tpu", {}, **profiles)


def test_steps_for_budget_floors_and_divides_its_own_step_exactly():
    assert steps_for_budget(1000.0, 300.0) == 3
    per_step = 0.1 + 0.2  # a float whose multiple does not divide back exactly
    assert steps_for_budget(per_step * 7, per_step) == 7
    assert steps_for_budget(10.0, 1000.0) == 1, "at least one step"
    with pytest.raises(ValueError, match="flops_per_step"):
        steps_for_budget(10.0, 0.0)


def test_budget_split_draws_disjoint_stratified_parts_of_the_budget():
    labels = np.array([0] * 80 + [1] * 20)
    fine_tuning, tuning = budget_split(labels, 40, tuning_fraction=0.25, seed=0)
    assert len(fine_tuning) + len(tuning) == 40 and not set(fine_tuning) & set(tuning)
    assert len(tuning) == 10  # ceil(0.25 * 40), as scikit-learn rounds
    assert labels[np.concatenate([fine_tuning, tuning])].sum() == 8, "the subsample keeps the 20% positives"
    assert labels[tuning].sum() == 2
    again = budget_split(labels, 40, 0.25, seed=0)
    assert np.array_equal(fine_tuning, again[0]) and np.array_equal(tuning, again[1])
    other = budget_split(labels, 40, 0.25, seed=1)
    assert not np.array_equal(np.sort(fine_tuning), np.sort(other[0]))
    everything = budget_split(labels, 100, 0.25, seed=0)
    assert sorted(np.concatenate(everything)) == list(range(100))


def test_budget_split_falls_back_to_a_plain_draw_when_a_class_cannot_be_represented():
    labels = np.repeat(np.arange(10), 5)  # ten classes, a budget of 12 leaves 3 for tuning
    fine_tuning, tuning = budget_split(labels, 12, 0.25, seed=0)
    assert len(fine_tuning) == 9 and len(tuning) == 3 and not set(fine_tuning) & set(tuning)


@pytest.mark.parametrize("budget", [1, 101, 2.5, True])
def test_budget_split_rejects_a_budget_outside_the_labels(budget):
    with pytest.raises(ValueError, match="budget"):
        budget_split(np.zeros(100), budget, 0.25, seed=0)


@pytest.mark.parametrize(
    "field, value", [("max_steps", 0), ("eval_every", 1.5), ("patience", True), ("warmup_steps", -1), ("lr", 0.0),
                     ("tuning_fraction", 1.0)]
)
def test_fine_tuning_recipe_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        FineTuning(**{field: value})


def test_fine_tune_stops_early_and_keeps_the_best_weights():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    data = batches(dict(x=torch.ones(8, 1), y=torch.zeros(8, 1)), batch_size=4)
    scores = iter([1.0, 3.0, 2.0, 2.0, 2.0, 2.0])
    weights = []

    def evaluate(model):
        weights.append(model.weight.detach().clone())
        return {"score": next(scores)}

    recipe = FineTuning(max_steps=100, eval_every=2, patience=2, lr=0.1, warmup_steps=0)
    history = fine_tune(
        model, data, lambda m, b: ((m(b["x"]) - b["y"]) ** 2).mean(), recipe, torch.device("cpu"), evaluate, "score"
    )
    assert history.best_step == 4 and history.steps[-1] == 8, "two evaluations without a better score stop it"
    assert torch.equal(model.weight, weights[1]), "the weights of the best evaluation are kept"


def test_batches_cover_every_row_once_per_epoch_and_reshuffle():
    data = dict(x=torch.arange(10), y=torch.arange(10) * 2)
    loader = batches(data, batch_size=3, seed=0)
    first, second = [torch.cat([b["x"] for b in loader]) for _ in range(2)]
    assert len(first) == 9 and len(set(first.tolist())) == 9, "the last partial batch is dropped"
    assert not torch.equal(first, second), "each epoch is shuffled anew"
    assert all(torch.equal(b["y"], b["x"] * 2) for b in loader), "rows stay together"
    again = torch.cat([b["x"] for b in batches(data, batch_size=3, seed=0)])
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="batch_size"):
        batches(data, batch_size=0)


def test_batches_are_the_batches_of_a_stack_dataset_loader_with_the_same_seed():
    data = dict(ids=torch.arange(20).view(10, 2), mask=torch.arange(10) % 2)
    peer = torch.utils.data.DataLoader(
        torch.utils.data.StackDataset(**data), batch_size=4, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(3),
    )
    ours = batches(data, batch_size=4, seed=3)
    for _ in range(2):  # two epochs
        pairs = list(zip(ours, peer, strict=True))
        assert pairs and all(torch.equal(a[key], b[key]) for a, b in pairs for key in data)
    with pytest.raises(ValueError, match="one length"):
        batches(dict(ids=torch.zeros(4, 2), mask=torch.zeros(3)), batch_size=2)


def test_summarise_gives_mean_sd_and_a_t_interval_per_group_in_order_of_appearance():
    runs = pd.DataFrame(
        dict(method=["b", "b", "b", "a", "a"], steps=[5, 5, 5, 7, 7], accuracy=[0.5, 0.6, 0.7, 0.9, 0.9])
    )
    table = summarise(runs, "method", ["accuracy"], fixed=["steps"])
    assert table["method"].tolist() == ["b", "a"]
    assert table.columns.tolist() == ["method", "steps", *[f"accuracy_{s}" for s in ("mean", "sd", "low", "high")], "n"]
    b = table.iloc[0]
    assert b["accuracy_mean"] == pytest.approx(0.6) and b["accuracy_sd"] == pytest.approx(0.1)
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert (b["accuracy_low"], b["accuracy_high"]) == pytest.approx((0.6 - half, 0.6 + half))
    assert table.iloc[1]["accuracy_low"] == pytest.approx(0.9) and table["n"].tolist() == [3, 2]
    with pytest.raises(ValueError, match="accuracy"):
        summarise(runs.drop(columns="accuracy"), "method", ["accuracy"])


def test_the_interval_covers_the_true_mean_at_its_stated_rate():
    """95% t-intervals from 3 normal draws cover the mean in 95% of 4000 trials; a miss of more than
    ±0.02 (6 standard errors of the rate) happens with probability below 1e-8."""
    rng = np.random.default_rng(0)
    covered = np.mean([low <= 0 <= high for low, high in (interval(rng.normal(size=3)) for _ in range(4000))])
    assert abs(covered - 0.95) < 0.02
    assert all(math.isnan(bound) for bound in interval([0.3]))


def test_mean_sd_is_one_token():
    assert mean_sd(0.5, 0.0) == "0.500±0.000"
    assert mean_sd(0.81234, 0.0132) == "0.812±0.013"
    assert mean_sd(0.7, float("nan")) == "0.700", "one run has no spread"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


LIBRARY = ["masking.py", "text.py", "vision.py", "contrastive.py", "train.py", "device.py", "ehr", "models"]
ABOVE_THE_LIBRARY = ("course_utils.experiments", "course_utils.viz", "course_utils.checks", "course_utils.grading")
ALLOWED = {"train.py": {"course_utils.viz"}}  # fit's live loss plot, imported only when asked for


@pytest.mark.parametrize("library", LIBRARY)
def test_library_modules_hold_no_experiment_and_import_none(library):
    paths = [PACKAGE / library] if library.endswith(".py") else sorted((PACKAGE / library).glob("*.py"))
    for path in paths:
        above = {m for m in imported_modules(path) if m.startswith(ABOVE_THE_LIBRARY)} - ALLOWED.get(path.name, set())
        assert not above, f"{path.relative_to(PACKAGE)} imports from a layer above it: {sorted(above)}"


def test_the_ehr_package_is_data_only():
    for path in sorted((PACKAGE / "ehr").glob("*.py")):
        imported = imported_modules(path)
        assert not {m for m in imported if m.startswith(("course_utils.models", "course_utils.train"))}, path.name
        assert "torch.nn" not in imported and "torch.utils.flop_counter" not in imported, path.name


def test_a_config_lists_as_short_lines_with_its_nested_configs_indented():
    from dataclasses import dataclass, field

    from course_utils.experiments.core import listing

    @dataclass
    class Inner:
        lr: float = 0.001

    @dataclass
    class Outer:
        name: str = "x" * 30
        seeds: tuple = (0, 1, 2)
        steps: int = 1000
        inner: Inner = field(default_factory=Inner)

    lines = listing(Outer(), width=60).splitlines()
    assert lines == ["Outer", f"  name='{'x' * 30}', seeds=(0, 1, 2)", "  steps=1000", "  inner: Inner", "    lr=0.001"]
    assert all(len(line) <= 60 for line in lines)
    with pytest.raises(ValueError, match="config must be a dataclass instance"):
        listing(Outer)


def test_a_summary_for_reading_shows_each_interval_as_one_token_and_none_for_one_run():
    from course_utils.experiments.core import for_reading, summarise

    runs = pd.DataFrame({"method": ["a", "a", "a", "b"], "steps": [5, 5, 5, 7], "score": [0.5, 0.6, 0.7, 0.9]})
    shown = for_reading(summarise(runs, "method", ["score"], fixed=["steps"]), ["method", "steps"], ["score"])
    assert list(shown.columns) == ["method", "steps", "score", "score 95% CI", "n"]
    low, high = stats.t.interval(0.95, 2, loc=0.6, scale=0.1 / 3**0.5)
    assert shown["score 95% CI"].tolist() == [f"{low:.3f}–{high:.3f}", ""] and " " not in shown["score 95% CI"][0]
    with pytest.raises(ValueError, match="lacks the columns"):
        for_reading(runs, ["method"], ["score"])
