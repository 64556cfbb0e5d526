"""Lab 6's image experiments: the canvas task, the equal-FLOP driver and its floors, the arms, the verdicts,
in ci sizes."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import torch

from course_utils.experiments.image_pretraining import (
    COMPARISON_TABLE,
    FLOORS,
    METHODS,
    PCA_PIXELS,
    PIXELS,
    PROBES,
    RANDOM_ENCODER,
    above,
    architecture_costs,
    arms_table,
    augmentation_arms,
    batch_size_arms,
    batch_table,
    build_model,
    canvas_digits,
    compare_methods,
    few_shot_indices,
    image_comparison_config,
    pretraining_batches,
    pretraining_loss,
    sequence_verdict,
    training_flops,
    verdicts,
)
from course_utils.models.flops import counted_flops, encoder_forward_flops
from course_utils.viz.masked_vs_contrastive import plot_arms, plot_method_comparison

CPU = torch.device("cpu")
VERDICTS = {"agrees", "disagrees", "not testable here"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """ci models are tiny: a second thread only adds overhead, and stalls when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def config():
    return image_comparison_config("ci")


@pytest.fixture(scope="module")
def comparison(config):
    return compare_methods(config, CPU)


@pytest.fixture(scope="module")
def arms(config):
    return augmentation_arms(config, CPU)


@pytest.fixture(scope="module")
def batches(config):
    return batch_size_arms(config, CPU)


def test_comparison_has_one_row_per_method_and_seed_with_every_floor(comparison, config):
    runs = comparison.runs
    assert list(runs["method"].unique()) == [*METHODS, *FLOORS]
    assert len(runs) == len(config.seeds) * (len(METHODS) + len(FLOORS))
    assert {"method", "seed", "steps", "flops_per_step", "batch_size", *PROBES} <= set(runs.columns)
    for probe in PROBES:
        assert runs[probe].between(0, 1).all()


def test_table_has_mean_sd_and_interval_per_probe(comparison):
    table = comparison.table
    assert list(table["method"]) == [*METHODS, *FLOORS]
    for probe in PROBES:
        assert {f"{probe}_mean", f"{probe}_sd", f"{probe}_low", f"{probe}_high"} <= set(table.columns)
    simclr = table.set_index("method").loc["simclr"]
    assert simclr["few_shot_low"] <= simclr["few_shot_mean"] <= simclr["few_shot_high"]


def test_every_method_spends_the_budget_to_within_one_step(comparison):
    pretrained = comparison.runs[comparison.runs["method"].isin(METHODS)]
    spent = pretrained["steps"] * pretrained["flops_per_step"]
    assert (spent <= comparison.budget_flops).all()
    assert (spent > comparison.budget_flops - pretrained["flops_per_step"]).all()


def test_simclr_gets_exactly_its_budget_steps_and_the_masked_methods_their_own_batch(comparison, config):
    runs = comparison.runs.set_index("method")
    assert (runs.loc["simclr", "steps"] == config.budget_simclr_steps).all()
    assert (runs.loc["mae", "batch_size"] == config.masked_batch_size).all()


def test_every_method_and_the_random_encoder_have_the_same_encoder(comparison):
    encoders = comparison.runs[comparison.runs["method"].isin([*METHODS, RANDOM_ENCODER])]["encoder_parameters"]
    assert encoders.nunique() == 1


def test_pixel_floors_are_the_same_for_every_seed(comparison):
    for floor in (PIXELS, PCA_PIXELS):
        assert comparison.runs.loc[comparison.runs["method"] == floor, "few_shot"].nunique() == 1


def test_the_same_seed_gives_the_same_probes(comparison, config):
    again = compare_methods(image_comparison_config("ci", seeds=config.seeds[:1]), CPU).runs
    first = comparison.runs[comparison.runs["seed"] == config.seeds[0]].reset_index(drop=True)
    columns = ["method", "steps", *PROBES]
    assert first[columns].equals(again[columns])


def test_a_simclr_step_counts_both_views():
    """One view's forward is F; a forward+backward of both views is about 2 x 3F, so above 4.5F for sure."""
    config = image_comparison_config("ci")
    single_view_forward = encoder_forward_flops(config.encoder, config.batch_size)
    step = training_flops("simclr", config, config.batch_size)
    assert step > 1.5 * 3 * single_view_forward
    assert training_flops("simclr", config, 2 * config.batch_size) > 1.9 * step


@pytest.mark.parametrize("method", METHODS)
def test_flops_counted_on_the_meta_device_equal_a_step_on_real_images(method):
    config = image_comparison_config("ci")
    model = build_model(method, config).train()
    shape = (config.batch_size, 1, config.encoder.image_size, config.encoder.image_size)
    batch = (torch.rand(shape), torch.rand(shape)) if method == "simclr" else torch.rand(shape)
    real = counted_flops(lambda: pretraining_loss(method, config, model, batch), model=model)
    assert training_flops(method, config, config.batch_size) == real


def test_mae_step_is_cheaper_than_simmim_and_simclr_at_the_cpu_sizes():
    config = image_comparison_config("cpu")
    flops = {method: training_flops(method, config, 8) for method in METHODS}
    assert flops["mae"] < flops["simmim"] < flops["simclr"]


def test_mae_saves_more_against_simmim_on_a_deeper_encoder():
    costs = architecture_costs(image_comparison_config("cpu"))
    assert list(costs["encoder_depth"]) == [2, 4]
    assert (costs["simmim_over_mae"] > 1).all()
    assert costs["simmim_over_mae"].is_monotonic_increasing


def test_canvas_digits_are_split_stratified_and_placed_whole(config):
    data = canvas_digits(config)
    size, digit = config.encoder.image_size, config.digit_size
    assert data.train_images.shape[1:] == (1, size, size) and data.train_digits.shape[1:] == (1, digit, digit)
    assert len(data.train_labels) + len(data.test_labels) == 1797
    test_share = torch.bincount(data.test_labels, minlength=10) / torch.bincount(
        torch.cat([data.train_labels, data.test_labels]), minlength=10
    )
    assert (test_share - config.test_fraction).abs().max() < 0.02
    torch.testing.assert_close(data.train_images.sum(dim=(1, 2, 3)), data.train_digits.sum(dim=(1, 2, 3)))


def test_pretraining_places_digits_afresh_every_batch(config):
    data = canvas_digits(config)
    stream = pretraining_batches("mae", config, data, torch.Generator().manual_seed(0), views="none")
    first, second = next(stream), next(stream)
    assert first.shape == (config.masked_batch_size, 1, config.encoder.image_size, config.encoder.image_size)
    assert not torch.equal(first, second)


def test_simclr_batches_are_two_different_views_of_the_same_canvases(config):
    data = canvas_digits(config)
    view1, view2 = next(pretraining_batches("simclr", config, data, torch.Generator().manual_seed(0)))
    assert view1.shape == view2.shape and not torch.equal(view1, view2)
    same1, same2 = next(pretraining_batches("simclr", config, data, torch.Generator().manual_seed(0), views="none"))
    assert torch.equal(same1, same2)


def test_few_shot_draws_take_the_same_number_of_each_class():
    labels = torch.arange(10).repeat(7)
    draws = few_shot_indices(labels, shots=3, draws=4)
    assert len(draws) == 4
    for draw in draws:
        assert np.bincount(labels.numpy()[draw], minlength=10).tolist() == [3] * 10
    assert not all(np.array_equal(draws[0], other) for other in draws[1:])


def test_augmentation_arms_run_every_seed_of_every_arm(arms, config, comparison):
    assert len(arms) == len(config.augmentation_arms) * len(config.seeds)
    assert set(zip(arms["method"], arms["views"])) == set(config.augmentation_arms)
    table = arms_table(comparison, arms)
    assert set(table["arm"]) == {"simclr, views: shift", "simclr, views: none", "mae, views: none", "mae, views: shift"}
    assert (table["n"] == len(config.seeds)).all()
    assert isinstance(plot_arms(table), matplotlib.figure.Figure)


def test_above_needs_intervals_that_do_not_overlap():
    table = pd.DataFrame(
        dict(method=["a", "b", "c"], few_shot_mean=[0.6, 0.5, 0.3], few_shot_low=[0.55, 0.4, 0.25],
             few_shot_high=[0.65, 0.58, 0.35])
    )
    assert not above(table, "a", "b", "few_shot")  # 0.55 < 0.58: overlapping
    assert above(table, "a", "c", "few_shot") and above(table, "b", "c", "few_shot")
    assert not above(table, "c", "a", "few_shot")


def test_batch_size_arms_hold_the_steps_and_vary_only_the_batch(batches, comparison, config):
    assert len(batches) == len(config.sweep_batch_sizes) * len(config.seeds)
    assert (batches["steps"] == config.budget_simclr_steps).all()
    assert list(batches["negatives"]) == [2 * b - 2 for b in config.sweep_batch_sizes for _ in config.seeds]
    table = batch_table(comparison, batches)
    assert list(table["batch_size"]) == sorted({*config.sweep_batch_sizes, config.batch_size})
    assert table["steps"].nunique() == 1 and table["flops_per_step"].is_monotonic_increasing


def test_verdicts_give_every_row_of_the_comparison_table_one_of_three_verdicts(comparison, arms, batches, config):
    table = verdicts(comparison, arms, architecture_costs(config), batches=batches)
    assert set(table["verdict"]) <= VERDICTS
    assert {"task", "augmentation", "batch size", "architecture", "best for: images", "best for: sequences"} <= set(
        table["aspect"]
    )
    assert set(COMPARISON_TABLE["aspect"]) <= {aspect.split(":")[0] for aspect in table["aspect"]}
    assert table.set_index("aspect").loc["best for: sequences", "verdict"] == "not testable here"


def test_sequence_verdict_reads_intervals_and_names_where_contrastive_lost():
    rows = []
    for repeat, noise in enumerate((0.0, 0.01, -0.01)):
        for budget, values in ((100, dict(masked=0.70, contrastive=0.60, scratch=0.55)),
                               (1000, dict(masked=0.80, contrastive=0.77, scratch=0.79))):
            rows += [dict(pretraining="masked events", budget=budget, repeat=repeat, auroc=values["masked"] + noise),
                     dict(pretraining="contrastive", budget=budget, repeat=repeat, auroc=values["contrastive"] + noise),
                     dict(pretraining="from scratch", budget=budget, repeat=repeat, auroc=values["scratch"] + noise)]
    verdict, reading = sequence_verdict(pd.DataFrame(rows))
    assert verdict == "agrees"
    assert "1000 labels" in reading and "contrastive below from scratch" in reading.split("|")[1]


def test_plot_method_comparison_returns_a_figure(comparison):
    assert isinstance(plot_method_comparison(comparison), matplotlib.figure.Figure)


@pytest.mark.parametrize(
    "overrides, argument",
    [
        (dict(methods=("simclr", "byol")), "methods"),
        (dict(methods=()), "methods"),
        (dict(seeds=()), "seeds"),
        (dict(batch_size=1), "batch_size"),
        (dict(masked_batch_size=1), "masked_batch_size"),
        (dict(budget_simclr_steps=0), "budget_simclr_steps"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(mae_mask_ratio=1.0), "mae_mask_ratio"),
        (dict(translate=1.5), "translate"),
        (dict(digit_size=20), "digit_size"),
        (dict(augmentation_arms=(("simclr", "jitter"),)), "views"),
        (dict(sweep_batch_sizes=(1,)), "sweep_batch_sizes"),
    ],
)
def test_bad_config_raises_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        image_comparison_config("ci", **overrides)


def test_bad_arguments_raise_naming_the_argument(config):
    with pytest.raises(ValueError, match="method"):
        build_model("byol", config)
    with pytest.raises(ValueError, match="views"):
        next(pretraining_batches("simclr", config, canvas_digits(config), torch.Generator(), views="colour"))
    with pytest.raises(ValueError, match="shots"):
        compare_methods(image_comparison_config("ci", shots=10_000), CPU)
    with pytest.raises(ValueError, match="profile"):
        image_comparison_config("laptop")
