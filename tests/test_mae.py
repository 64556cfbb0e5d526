"""course_utils.models.mae: the encoder sees only visible patches, the loss only removed ones."""

import pytest
import torch

from course_utils.models import MAEConfig, MaskedAutoencoder
from course_utils.models.mae import masked_mse, normalized_patches
from course_utils.vision import patchify, unpatchify

SMALL = dict(
    image_size=8,
    patch_size=2,
    channels=3,
    dim=32,
    depth=2,
    num_heads=4,
    decoder_dim=16,
    decoder_depth=1,
    decoder_num_heads=2,
)


def small_model(**overrides) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(MAEConfig(**{**SMALL, **overrides})).eval()


def test_forward_returns_loss_pixels_per_patch_and_mask():
    model, imgs = small_model(), torch.rand(4, 3, 8, 8)
    loss, pred, mask = model(imgs, mask_ratio=0.75)
    assert loss.dim() == 0 and loss.item() > 0
    assert pred.shape == (4, 16, 2 * 2 * 3) and mask.shape == (4, 16)
    assert torch.equal(mask.sum(dim=1), torch.full((4,), 12.0))


def test_encoder_receives_only_cls_and_visible_patches():
    model, seen = small_model(), []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    model(torch.rand(2, 3, 8, 8), mask_ratio=0.75)
    assert seen == [torch.Size([2, 1 + 4, 32])]


def test_latent_does_not_depend_on_the_pixels_of_removed_patches():
    model, imgs = small_model(), torch.rand(2, 3, 8, 8)
    latent, mask, _ = model.forward_encoder(imgs, 0.75, torch.Generator().manual_seed(0))
    patches = patchify(imgs, 2).clone()
    patches[mask.bool()] = torch.randn_like(patches[mask.bool()])
    changed = unpatchify(patches, 2, 3)
    latent_changed, _, _ = model.forward_encoder(changed, 0.75, torch.Generator().manual_seed(0))
    assert torch.allclose(latent, latent_changed, atol=1e-6)
    latent_other, _, _ = model.forward_encoder(torch.rand(2, 3, 8, 8), 0.75, torch.Generator().manual_seed(0))
    assert not torch.allclose(latent, latent_other, atol=1e-3)


def test_mask_tokens_in_encoder_ablation_runs_the_encoder_on_every_patch():
    model, seen = small_model(mask_tokens_in_encoder=True), []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    loss, pred, mask = model(torch.rand(2, 3, 8, 8), mask_ratio=0.75)
    assert seen == [torch.Size([2, 1 + 16, 32])]
    assert pred.shape == (2, 16, 12) and torch.isfinite(loss)


def test_decoder_input_puts_each_visible_token_back_at_its_patch():
    model = small_model()
    B, L, keep = 2, 16, 4
    latent = torch.randn(B, 1 + keep, 32)
    _, _, ids_restore = model.forward_encoder(torch.rand(B, 3, 8, 8), 0.75, torch.Generator().manual_seed(1))
    tokens = model.decoder_input(latent, ids_restore) - model.decoder_pos_embed  # [B, 1+L, D_dec]
    embedded = model.decoder_embed(latent)
    ids_shuffle = ids_restore.argsort(dim=1)
    for b in range(B):
        for rank in range(L):
            position = ids_shuffle[b, rank].item()
            expected = embedded[b, 1 + rank] if rank < keep else model.mask_token[0, 0]
            assert torch.allclose(tokens[b, 1 + position], expected, atol=1e-6)
    assert torch.allclose(tokens[:, 0], embedded[:, 0], atol=1e-6)


def test_loss_ignores_predictions_for_visible_patches():
    model, imgs = small_model(), torch.rand(2, 3, 8, 8)
    _, pred, mask = model(imgs, 0.75, torch.Generator().manual_seed(2))
    changed = pred.clone()
    changed[~mask.bool()] += 10.0  # visible patches only
    assert torch.equal(model.forward_loss(imgs, pred, mask), model.forward_loss(imgs, changed, mask))
    changed[mask.bool()] += 10.0
    assert not torch.equal(model.forward_loss(imgs, pred, mask), model.forward_loss(imgs, changed, mask))


def test_loss_is_the_mean_squared_pixel_error_over_removed_patches():
    target, pred = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    pred[0, 1] = 3.0
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert masked_mse(target, pred, mask).item() == pytest.approx((9 + 1) / 2)
    assert masked_mse(target, pred, torch.zeros(1, 4)).item() == 0.0


def test_norm_pix_loss_scores_against_per_patch_normalised_pixels():
    model, imgs = small_model(norm_pix_loss=True), torch.rand(2, 3, 8, 8)
    _, pred, mask = model(imgs, 0.75, torch.Generator().manual_seed(3))
    target = patchify(imgs, 2)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)  # unbiased, as the official code
    expected = ((((target - mean) / (var + 1e-6) ** 0.5) - pred) ** 2).mean(-1)
    expected = (expected * mask).sum() / mask.sum()
    assert torch.allclose(model.forward_loss(imgs, pred, mask), expected, atol=1e-6)
    # A prediction of the true normalised patches scores ~0; of the raw pixels, not.
    assert model.forward_loss(imgs, normalized_patches(target), mask).item() < 1e-10
    assert model.forward_loss(imgs, target, mask).item() > 0.1


def test_norm_pix_reconstruction_borrows_patch_mean_and_scale():
    model, imgs = small_model(norm_pix_loss=True), torch.rand(2, 3, 8, 8)
    # A perfect norm-pix prediction must reconstruct the image exactly.
    model.forward_decoder = lambda latent, ids_restore: normalized_patches(patchify(imgs, 2))
    reconstruction, mask = model.reconstruct(imgs, 0.75, torch.Generator().manual_seed(4))
    assert torch.allclose(reconstruction, imgs, atol=1e-4) and mask.shape == (2, 16)


def test_training_steps_reduce_the_reconstruction_loss():
    model = small_model().train()
    imgs = torch.rand(8, 3, 8, 8).cumsum(dim=-1) / 8  # smooth left-to-right ramps: predictable
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(60):
        loss, _, _ = model(imgs, 0.5, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_encode_gives_one_feature_vector_per_image_from_every_patch():
    """``encode`` equals the encoder run with nothing removed (mask ratio 0, patches merely shuffled):
    the mean of its patch outputs, or its cls output."""
    model = small_model()
    imgs = torch.rand(5, 3, 8, 8)
    latent, mask, _ = model.forward_encoder(imgs, 0.0, torch.Generator().manual_seed(0))
    assert latent.shape == (5, 1 + 16, 32) and not mask.any()
    torch.testing.assert_close(model.encode(imgs), latent[:, 1:].mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.encode(imgs, pool="cls"), latent[:, 0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        model.encode(imgs, pool="max")


def test_position_embeddings_are_fixed_buffers_with_a_zero_cls_row():
    model = small_model()
    assert "pos_embed" not in dict(model.named_parameters())
    assert model.pos_embed.shape == (1, 17, 32) and torch.all(model.pos_embed[0, 0] == 0)
    assert model.decoder_pos_embed.shape == (1, 17, 16)


@pytest.mark.parametrize(
    "overrides,argument",
    [
        (dict(image_size=9), "patch_size"),
        (dict(dim=30), "dim"),
        (dict(decoder_dim=16, decoder_num_heads=3), "decoder_dim"),
    ],
)
def test_config_rejects_inconsistent_sizes(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        MAEConfig(**{**SMALL, **overrides})


def test_encoder_flops_fall_with_the_mask_ratio_and_sweep_reports_each_ratio():
    from course_utils.models.mae import mask_ratio_sweep

    model = small_model()
    sweep = mask_ratio_sweep(model, torch.rand(6, 3, 8, 8), [0.0, 0.5, 0.75])
    assert sweep["mask_ratio"] == [0.0, 0.5, 0.75]
    assert sweep["loss"][0] == 0.0 and sweep["loss"][1] > 0
    flops = sweep["encoder_mflops"]
    assert flops[0] > flops[1] > flops[2] > 0
    # 17 -> 9 tokens: the linear layers' cost halves (nearly), attention's falls faster.
    assert 1.7 < flops[0] / flops[1] < 2.2


def test_pasted_reconstruction_keeps_visible_pixels_and_fills_removed_ones():
    from course_utils.viz.mae import pixel_mask, reconstruction_panels

    model, imgs = small_model(), torch.rand(2, 3, 8, 8)
    panels = reconstruction_panels(model, imgs, 0.75, torch.Generator().manual_seed(6))
    removed = pixel_mask(panels["mask"], 2, 3).bool()
    pasted = panels["reconstruction + visible"]
    assert torch.equal(pasted[~removed], imgs[~removed].clamp(0, 1))
    assert torch.equal(pasted[removed], panels["reconstruction"][removed])
    assert torch.all(panels["masked"][removed] == 0.5)


def test_linear_probe_separates_separable_features():
    from course_utils.models.mae import linear_probe_accuracy

    generator = torch.Generator().manual_seed(7)
    labels = torch.arange(200) % 2
    features = torch.randn(200, 5, generator=generator) + 4 * labels[:, None]
    noise = torch.randn(200, 5, generator=generator)
    assert linear_probe_accuracy(features[:100], labels[:100], features[100:], labels[100:]) > 0.95
    # Pure noise: accuracy of a fair coin over 100 test points, 5-sigma bound 0.5 +- 0.25.
    assert abs(linear_probe_accuracy(noise[:100], labels[:100], noise[100:], labels[100:]) - 0.5) < 0.25


# Wrong answers students write; each check must name the mistake.
def _unpatchify_transposed(x, patch_size, channels):
    from course_utils.vision import unpatchify

    return unpatchify(x, patch_size, channels).transpose(-1, -2)


def _patchify_channel_first(imgs, patch_size):
    B, C, H, W = imgs.shape
    p = patch_size
    return imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, p * p * C)


def _masking_one_for_kept(x, mask_ratio, generator=None):
    from course_utils.vision import random_masking

    visible, mask, ids_restore = random_masking(x, mask_ratio, generator)
    return visible, 1 - mask, ids_restore


def _masking_without_unshuffle(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.rand(B, L, generator=generator).argsort(dim=1)
    mask = torch.ones(B, L)
    mask[:, :keep] = 0
    return x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D)), mask, ids_shuffle.argsort(dim=1)


def _masking_keeps_highest_noise(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.rand(B, L, generator=generator).argsort(dim=1, descending=True)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(B, L)
    mask[:, :keep] = 0
    return x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D)), mask.gather(1, ids_restore), ids_restore


def _encoder_on_all_patches(model, imgs, mask_ratio, generator=None):
    from course_utils.vision import random_masking

    x = model.embed_patches(imgs)
    _, mask, ids_restore = random_masking(x, mask_ratio, generator)
    return model.encode_tokens(x), mask, ids_restore


def _decoder_input_without_unshuffle(model, latent, ids_restore):
    x = model.decoder_embed(latent)
    B, L = ids_restore.shape
    tokens = torch.cat([x, model.mask_token.expand(B, L + 1 - x.shape[1], -1)], dim=1)
    return tokens + model.decoder_pos_embed


def _loss_over_all_patches(imgs, pred, mask, patch_size, norm_pix_loss=False):
    from course_utils.models.mae import normalized_patches

    target = patchify(imgs, patch_size)
    target = normalized_patches(target) if norm_pix_loss else target
    return ((pred - target) ** 2).mean()


@pytest.mark.parametrize(
    "check,wrong,message",
    [
        ("check_unpatchify", _unpatchify_transposed, "unpatchify order transposed"),
        ("check_patchify", _patchify_channel_first, r"\(c, p, q\) order"),
        ("check_random_masking", _masking_one_for_kept, "mask uses 1 for kept"),
        ("check_random_masking", _masking_without_unshuffle, "forgot to unshuffle"),
        ("check_encode_visible", _encoder_on_all_patches, "encoder saw all patches"),
        ("check_decoder_input", _decoder_input_without_unshuffle, "forgot to unshuffle"),
        ("check_mae_loss", _loss_over_all_patches, "loss includes visible patches"),
    ],
)
def test_checks_name_the_misconception(check, wrong, message):
    from course_utils.checks import Misconception
    from course_utils.checks import mae as checks

    with pytest.raises(Misconception, match=message):
        getattr(checks, check)(wrong)


@pytest.mark.parametrize(
    "check,reference",
    [
        ("check_patchify", lambda imgs, p: patchify(imgs, p)),
        ("check_random_masking", _masking_keeps_highest_noise),  # keeping the highest noise is as random
        ("check_unpatchify", lambda x, p, c: unpatchify(x, p, c)),
        ("check_encode_visible", lambda model, imgs, r, g=None: model.forward_encoder(imgs, r, g)),
        ("check_decoder_input", lambda model, latent, ids: model.decoder_input(latent, ids)),
    ],
)
def test_checks_pass_the_reference_implementation(check, reference):
    from course_utils.checks import mae as checks

    getattr(checks, check)(reference)


def test_decoder_unshuffles_even_when_every_patch_is_kept():
    torch.manual_seed(0)
    model = MaskedAutoencoder(MAEConfig(image_size=8, patch_size=2, channels=1, dim=8, depth=1, num_heads=2,
                                        decoder_dim=8, decoder_depth=1, decoder_num_heads=2)).eval()
    imgs = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(imgs, 0.0, torch.Generator().manual_seed(1))
        assert not torch.equal(ids_restore, torch.arange(16).expand(2, 16)), "the draw happened to keep patch order"
        in_order = model.encode_tokens(model.embed_patches(imgs))  # [B, 1+L, D], patches in image order
        shuffled_back = model.decoder_input(latent, ids_restore)
        expected = model.decoder_input(in_order, torch.arange(16).expand(2, 16))
    assert mask.sum() == 0
    assert torch.allclose(shuffled_back, expected, atol=1e-5)


def _linear_layers(model):
    return {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def test_linear_weights_are_xavier_uniform_as_in_the_official_code():
    """Xavier-uniform weights lie in +-sqrt(6 / (fan_in + fan_out)) with variance 2 / (fan_in + fan_out).

    The sample variance of n such weights has relative standard deviation sqrt(4/5 / n) (a uniform's
    fourth moment); the bound below is 6 of those, a false failure about 2e-9 per layer. The
    truncated normal with std 0.02 that BERT uses has a variance 10x to 40x too small here.
    """
    model = small_model(dim=64, decoder_dim=32, image_size=16, patch_size=4)
    layers = _linear_layers(model)
    assert "patch_embed" in layers and "encoder.blocks.0.attention.qkv" in layers and "decoder_pred" in layers
    for name, layer in layers.items():
        fan_out, fan_in = layer.weight.shape
        weights = layer.weight.detach().double().flatten()
        variance = 2 / (fan_in + fan_out)
        assert weights.abs().max() <= (3 * variance) ** 0.5, name
        tolerance = 6 * (0.8 / weights.numel()) ** 0.5
        assert abs(weights.pow(2).mean().item() / variance - 1) < tolerance, name


def test_linear_biases_are_zero_and_layer_norms_are_identity():
    model = small_model(mask_tokens_in_encoder=True)
    for name, layer in _linear_layers(model).items():
        if name == "patch_embed":
            # The official patch embedding is a Conv2d that _init_weights never touches: PyTorch's default bias.
            bound = 1 / model.config.patch_dim**0.5
            assert layer.bias.abs().max() <= bound and layer.bias.abs().max() > 0
        else:
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias)), name
    norms = [module for module in model.modules() if isinstance(module, torch.nn.LayerNorm)]
    assert len(norms) == 2 * SMALL["depth"] + 1 + 2 * SMALL["decoder_depth"] + 1
    for norm in norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_cls_and_mask_tokens_are_normal_with_std_002():
    """Over 3 x 512 token entries, sum(x^2) / 0.02^2 is chi-square with 1536 degrees of freedom:
    the bounds hold with probability 1 - 2e-9."""
    from scipy.stats import chi2

    model = small_model(dim=512, num_heads=4, decoder_dim=512, decoder_num_heads=4, mask_tokens_in_encoder=True)
    tokens = torch.cat([model.cls_token.flatten(), model.mask_token.flatten(), model.encoder_mask_token.flatten()])
    statistic = (tokens.double() / 0.02).pow(2).sum().item()
    assert chi2.ppf(1e-9, tokens.numel()) < statistic < chi2.isf(1e-9, tokens.numel())


def test_explorer_is_returned_for_the_notebook_to_display_not_displayed_itself(monkeypatch):
    """The notebook shows the returned widget once; a display() of it inside would show it a second time."""
    import IPython.display
    import ipywidgets

    from course_utils.viz.mae import mae_explorer

    displayed = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **kwargs: displayed.extend(objects))
    explorer = mae_explorer(small_model(), torch.rand(3, 3, 8, 8))
    assert isinstance(explorer, ipywidgets.VBox)
    assert all(not isinstance(shown, ipywidgets.Widget) for shown in displayed)


def test_sweep_plot_shows_the_encoder_cost_in_mflops_from_zero():
    import matplotlib.pyplot as plt

    from course_utils.viz.mae import plot_mask_ratio_sweep

    # A nearly flat loss (as after a smoke test) tempts matplotlib into an offset such as "+1.0001".
    sweep = {"mask_ratio": [0.25, 0.5, 0.75], "loss": [1.00010, 1.00012, 1.00014], "encoder_mflops": [36.0, 24.0, 12.0]}
    fig = plot_mask_ratio_sweep(sweep)
    cost_ax = fig.axes[1]
    assert "MFLOPs" in cost_ax.get_ylabel() and cost_ax.get_ylim()[0] == 0
    assert list(cost_ax.lines[0].get_ydata()) == sweep["encoder_mflops"]
    fig.canvas.draw()
    assert all(ax.yaxis.get_offset_text().get_text() == "" for ax in fig.axes)  # ticks read as plain numbers
    plt.close(fig)


def test_probe_curve_plots_each_evaluation_and_rejects_missing_metrics():
    import matplotlib.pyplot as plt

    from course_utils.viz.mae import plot_probe_during_pretraining

    evaluations = [{"step": 100, "probe accuracy": 0.8}, {"step": 200, "probe accuracy": 0.9}]
    fig = plot_probe_during_pretraining(evaluations, {"raw pixels": 0.95})
    assert list(fig.axes[0].lines[0].get_xdata()) == [100, 200]
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.8, 0.9]
    plt.close(fig)
    with pytest.raises(ValueError, match="evaluations"):
        plot_probe_during_pretraining([{"step": 100, "loss": 0.1}], {})
