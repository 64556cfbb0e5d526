"""Lab 6's image experiments: the equal-FLOP driver, its floors, the sweeps and their plots, in ci sizes."""

from __future__ import annotations

import matplotlib.figure
import pytest
import torch

from course_utils.experiments.image_pretraining import (
    AUGMENTATIONS,
    FLOORS,
    METHODS,
    augmentation_ablation,
    batch_size_sweep,
    build_model,
    compare_methods,
    crop_and_flip,
    finetune_metric,
    image_comparison_config,
    pretraining_batches,
    split_digits,
    training_flops,
)
from course_utils.models.flops import encoder_forward_flops
from course_utils.viz.masked_vs_contrastive import plot_augmentation_ablation, plot_batch_sweep, plot_method_comparison

CPU = torch.device("cpu")


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


def test_comparison_has_one_row_per_method_and_seed_with_the_floors(comparison, config):
    runs = comparison.runs
    assert list(runs["method"].unique()) == [*METHODS, *FLOORS]
    assert len(runs) == len(config.seeds) * (len(METHODS) + len(FLOORS))
    expected = {"method", "seed", "parameters", "encoder_parameters", "steps", "flops_per_step", "probe_accuracy",
                "pretraining_seconds", *map(finetune_metric, config.label_budgets)}
    assert expected <= set(runs.columns)
    assert runs["probe_accuracy"].between(0, 1).all()
    pixels = runs[runs["method"] == "raw pixels"]
    assert pixels[[finetune_metric(b) for b in config.label_budgets]].isna().all().all()  # a probe, not fine-tuned
    random_encoder = runs[runs["method"] == "random encoder"]
    assert random_encoder[[finetune_metric(b) for b in config.label_budgets]].notna().all().all()


def test_table_has_mean_and_sd_per_method(comparison):
    table = comparison.table
    assert list(table["method"]) == [*METHODS, *FLOORS]
    for metric in comparison.metrics:
        assert {f"{metric}_mean", f"{metric}_sd"} <= set(table.columns)


def test_every_method_spends_the_budget_to_within_one_step(comparison):
    pretrained = comparison.runs[comparison.runs["method"].isin(METHODS)]
    spent = pretrained["steps"] * pretrained["flops_per_step"]
    assert (spent <= comparison.budget_flops).all()
    assert (spent > comparison.budget_flops - pretrained["flops_per_step"]).all()


def test_mae_gets_exactly_its_budget_steps(comparison, config):
    mae = comparison.runs[comparison.runs["method"] == "mae"]
    assert (mae["steps"] == config.budget_mae_steps).all()


def test_every_method_trains_the_same_encoder(comparison):
    encoders = comparison.runs[comparison.runs["method"] != "raw pixels"]["encoder_parameters"]
    assert encoders.nunique() == 1


def test_the_same_seed_gives_the_same_probe_accuracy(comparison, config):
    again = compare_methods(image_comparison_config("ci", seeds=config.seeds[:1]), CPU).runs
    first = comparison.runs[comparison.runs["seed"] == config.seeds[0]].reset_index(drop=True)
    columns = ["method", "steps", "probe_accuracy", *map(finetune_metric, config.label_budgets)]
    assert first[columns].equals(again[columns])


def test_a_simclr_step_counts_both_views():
    """One view's forward is F; a forward+backward of both views is about 2 x 3F, so above 3F for sure."""
    config = image_comparison_config("ci")
    single_view_forward = encoder_forward_flops(config.encoder, config.batch_size)
    step = training_flops("simclr", config, config.batch_size)
    assert step > 3 * single_view_forward
    assert step > 1.5 * 3 * single_view_forward  # one view's forward + backward would be about 3F
    assert training_flops("simclr", config, 2 * config.batch_size) > 1.9 * step


def test_mae_step_is_cheaper_than_simmim_and_simclr():
    config = image_comparison_config("cpu")
    flops = {method: training_flops(method, config, 8) for method in METHODS}
    assert flops["mae"] < flops["simmim"] < flops["simclr"]


def test_split_is_stratified_and_disjoint(config):
    data = split_digits(config)
    assert data.train_images.shape[1:] == (1, config.encoder.image_size, config.encoder.image_size)
    assert len(data.train_labels) + len(data.test_labels) == 1797
    test_share = torch.bincount(data.test_labels, minlength=10) / torch.bincount(
        torch.cat([data.train_labels, data.test_labels]), minlength=10
    )
    assert (test_share - config.test_fraction).abs().max() < 0.02


def test_crop_and_flip_keeps_shape_and_switched_off_is_the_identity():
    images = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(crop_and_flip(images, crop=False, flip=False), images)
    flipped = crop_and_flip(images, crop=False, flip=True, generator=torch.Generator().manual_seed(0))
    for image, out in zip(images, flipped):
        assert torch.allclose(out, image, atol=1e-5) or torch.allclose(out, image.flip(-1), atol=1e-5)
    cropped = crop_and_flip(images, generator=torch.Generator().manual_seed(0))
    assert cropped.shape == images.shape and not torch.allclose(cropped, images)


def test_simclr_batches_are_two_different_views_of_the_same_images(config):
    images = torch.rand(20, 1, 8, 8)
    view1, view2 = next(pretraining_batches("simclr", images, 4, "crop+flip", torch.Generator().manual_seed(0)))
    assert view1.shape == view2.shape == (4, 1, 8, 8) and not torch.equal(view1, view2)
    same1, same2 = next(pretraining_batches("simclr", images, 4, "none", torch.Generator().manual_seed(0)))
    assert torch.equal(same1, same2)


def test_batch_size_sweep_has_one_row_per_method_and_batch_size(config):
    sweep = batch_size_sweep(config, CPU)
    assert len(sweep) == 2 * len(config.sweep_batch_sizes)
    assert set(sweep["method"]) == {"simclr", "mae"}
    simclr = sweep[sweep["method"] == "simclr"].sort_values("batch_size")
    assert list(simclr["negatives"]) == [2 * b - 2 for b in sorted(config.sweep_batch_sizes)]
    assert simclr["steps"].is_monotonic_decreasing  # same FLOPs, bigger batches, fewer steps
    assert isinstance(plot_batch_sweep(sweep), matplotlib.figure.Figure)


def test_augmentation_ablation_covers_every_simclr_setting_and_mae_with_and_without(config):
    ablation = augmentation_ablation(config, CPU)
    assert list(zip(ablation["method"], ablation["augmentation"])) == [
        *(("simclr", name) for name in AUGMENTATIONS),
        ("mae", "crop+flip"),
        ("mae", "none"),
    ]
    assert ablation["probe_accuracy"].between(0, 1).all()
    assert isinstance(plot_augmentation_ablation(ablation), matplotlib.figure.Figure)


def test_plot_method_comparison_returns_a_figure(comparison):
    assert isinstance(plot_method_comparison(comparison), matplotlib.figure.Figure)


@pytest.mark.parametrize(
    "overrides, argument",
    [
        (dict(methods=("simclr", "byol")), "methods"),
        (dict(methods=()), "methods"),
        (dict(seeds=()), "seeds"),
        (dict(label_budgets=(2,)), "label_budgets"),
        (dict(batch_size=1), "batch_size"),
        (dict(sweep_batch_sizes=(1, 8)), "sweep_batch_sizes"),
        (dict(budget_mae_steps=0), "budget_mae_steps"),
        (dict(test_fraction=1.0), "test_fraction"),
        (dict(mae_mask_ratio=1.0), "mae_mask_ratio"),
        (dict(masked_augmentation="jitter"), "masked_augmentation"),
        (dict(crop_min_scale=0.0), "crop_min_scale"),
    ],
)
def test_bad_config_raises_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        image_comparison_config("ci", **overrides)


def test_bad_arguments_raise_naming_the_argument(config):
    with pytest.raises(ValueError, match="method"):
        build_model("byol", config)
    with pytest.raises(ValueError, match="augmentation"):
        next(pretraining_batches("simclr", torch.rand(8, 1, 8, 8), 4, "colour", torch.Generator()))
    with pytest.raises(ValueError, match="batch_size"):
        next(pretraining_batches("mae", torch.rand(8, 1, 8, 8), 16, "none", torch.Generator()))
    with pytest.raises(ValueError, match="label_budgets"):
        compare_methods(image_comparison_config("ci", label_budgets=(10_000,)), CPU)
    with pytest.raises(ValueError, match="profile"):
        image_comparison_config("laptop")
