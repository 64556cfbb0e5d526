"""course_utils.contrastive and the Lab 6 models: SimCLR's NT-Xent, views and model, SimMIM's mask token and loss,
the ViT encoder."""

import math

import pytest
import torch

from course_utils.contrastive import (
    CROP_SCALE,
    TEMPERATURE,
    augmentations,
    digit_augmentations,
    nt_xent_loss,
    random_translate,
    two_views,
)
from course_utils.models import MAEConfig, MaskedAutoencoder
from course_utils.models.simclr import SimCLR
from course_utils.models.simmim import SimMIM
from course_utils.models.vit import ViTEncoder
from course_utils.vision import patchify, unpatchify

SMALL = dict(image_size=8, patch_size=2, channels=3, dim=32, depth=2, num_heads=4, decoder_dim=16, decoder_num_heads=2)
L, PATCH_DIM = 16, 2 * 2 * 3


def small_simmim(**overrides) -> SimMIM:
    torch.manual_seed(0)
    return SimMIM(MAEConfig(**{**SMALL, **overrides})).eval()


def small_simclr(**overrides) -> SimCLR:
    torch.manual_seed(0)
    return SimCLR(MAEConfig(**{**SMALL, **overrides}), hidden_dim=32, out_dim=16).eval()


def orthonormal_rows(count: int, dim: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, count, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    return q.T.float()  # [count, dim]


# NT-Xent
def nt_xent_by_loop(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The definition, one anchor and one pair at a time."""
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n, B = len(z), len(z1)
    total = 0.0
    for i in range(n):
        positive = (i + B) % n
        denominator = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[positive]) / temperature) / denominator)
    return total / n


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 2.0])
def test_nt_xent_equals_the_per_pair_definition(temperature):
    generator = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    assert nt_xent_loss(z1, z2, temperature).item() == pytest.approx(nt_xent_by_loop(z1, z2, temperature), abs=1e-5)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_identical_views_with_orthogonal_negatives_score_the_closed_form(temperature):
    """Positives at similarity 1, all 2B - 2 negatives at 0: loss = log(1 + (2B - 2) exp(-1/t))."""
    B = 4
    z = orthonormal_rows(B, 8)
    expected = math.log(1 + (2 * B - 2) * math.exp(-1 / temperature))
    assert nt_xent_loss(z, z, temperature).item() == pytest.approx(expected, abs=1e-5)


def test_turning_the_views_apart_raises_the_loss_as_the_closed_form_says():
    """View 2 of image i at angle theta from view 1, still orthogonal to every other image's views:
    loss = log(1 + (2B - 2) exp(-cos(theta)/t)), increasing in theta."""
    B, temperature = 3, 0.5
    basis = orthonormal_rows(2 * B, 2 * B)
    losses = []
    for theta in [0.0, 0.5, 1.0, 2.0, 3.0]:
        z2 = math.cos(theta) * basis[:B] + math.sin(theta) * basis[B:]
        losses.append(nt_xent_loss(basis[:B], z2, temperature).item())
        expected = math.log(1 + (2 * B - 2) * math.exp(-math.cos(theta) / temperature))
        assert losses[-1] == pytest.approx(expected, abs=1e-5)
    assert losses == sorted(losses) and losses[0] < losses[-1]


def test_self_similarity_is_excluded_so_perfect_pairs_at_low_temperature_score_zero():
    """Counting an anchor as its own negative adds exp(1/t) to every denominator, as much as the
    positive: the loss could never fall below log 2 = 0.69."""
    z = orthonormal_rows(4, 8)
    assert nt_xent_loss(z, z, temperature=0.05).item() < 1e-6


def test_nt_xent_compares_directions_not_lengths():
    generator = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    scales = torch.rand(4, 1, generator=generator) * 10 + 0.1
    torch.testing.assert_close(nt_xent_loss(z1 * scales, z2, 0.5), nt_xent_loss(z1, z2, 0.5))


@pytest.mark.parametrize(
    "z1,z2,temperature,argument",
    [
        (torch.randn(4), torch.randn(4), 0.5, "z1"),
        (torch.randn(1, 8), torch.randn(1, 8), 0.5, "z1"),  # one pair: no negatives
        (torch.randn(4, 8), torch.randn(3, 8), 0.5, "z2"),
        (torch.randn(4, 8), torch.randn(4, 8), 0.0, "temperature"),
        (torch.randn(4, 8), torch.randn(4, 8), -0.5, "temperature"),
        (torch.randn(4, 8), torch.randn(4, 8), True, "temperature"),
    ],
)
def test_nt_xent_rejects_bad_inputs_naming_the_argument(z1, z2, temperature, argument):
    with pytest.raises(ValueError, match=argument):
        nt_xent_loss(z1, z2, temperature)


# Augmented views
@pytest.mark.parametrize("channels", [1, 3])
def test_views_are_reproducible_for_a_seed_and_differ_for_another(channels):
    images, transform = torch.rand(4, channels, 16, 16), augmentations(16, channels)
    first = two_views(images, transform, torch.Generator().manual_seed(0))
    again = two_views(images, transform, torch.Generator().manual_seed(0))
    other = two_views(images, transform, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


@pytest.mark.parametrize("channels,dtype", [(1, torch.float32), (3, torch.float32), (3, torch.uint8)])
def test_views_keep_shape_and_dtype(channels, dtype):
    images = torch.rand(3, channels, 16, 16)
    images = (images * 255).to(dtype) if dtype == torch.uint8 else images
    for view in two_views(images, augmentations(16, channels), torch.Generator().manual_seed(0)):
        assert view.shape == images.shape and view.dtype == dtype


def test_each_image_and_each_view_is_augmented_on_its_own():
    """Eight copies of one image: per-image draws give eight different views, and view 1 differs from view 2.
    Two draws of a crop covering 8-100% at a random position coincide with probability ~0."""
    images = torch.rand(1, 3, 16, 16).expand(8, -1, -1, -1)
    view1, view2 = two_views(images, augmentations(16, 3), torch.Generator().manual_seed(3))
    assert all(not torch.equal(view1[i], view1[j]) for i in range(8) for j in range(i + 1, 8))
    assert all(not torch.equal(view1[i], view2[i]) for i in range(8))


def test_views_from_a_generator_leave_the_global_rng_alone_and_advance_the_generator():
    images, transform, generator = torch.rand(2, 3, 16, 16), augmentations(16, 3), torch.Generator().manual_seed(0)
    state = torch.get_rng_state()
    first = two_views(images, transform, generator)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(two_views(images, transform, generator)[0], first[0])
    assert torch.equal(torch.get_rng_state(), state)


def test_views_from_a_generator_do_not_depend_on_the_global_rng():
    images, transform = torch.rand(3, 1, 16, 16), digit_augmentations()
    torch.manual_seed(1)
    first = two_views(images, transform, torch.Generator().manual_seed(4))
    torch.manual_seed(2)
    again = two_views(images, transform, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_the_simclr_defaults_are_the_papers_crop_and_imagenet_temperature():
    assert CROP_SCALE == (0.08, 1.0) and TEMPERATURE == 0.1
    assert "scale=(0.08, 1.0)" in repr(augmentations(16, 3))
    model = SimCLR(MAEConfig(**SMALL))
    assert model.temperature == TEMPERATURE
    assert model.projection_head[-1].out_features == SMALL["dim"] // 2  # the head narrows, as the paper's


def one_pixel_images(count: int, size: int = 16) -> torch.Tensor:
    """``[count, 1, size, size]`` black images with one white pixel in the centre: a shift moves its centroid."""
    images = torch.zeros(count, 1, size, size)
    images[:, :, size // 2, size // 2] = 1.0
    return images


def centroid_shift(images: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` the (x, y) shift of each image's centre of mass from the centre pixel of ``one_pixel_images``."""
    size = images.shape[-1]
    grid = torch.arange(size, dtype=torch.float32)
    mass = images.sum(dim=(1, 2, 3))
    x = (images.sum(dim=(1, 2)) * grid).sum(-1) / mass
    y = (images.sum(dim=(1, 3)) * grid).sum(-1) / mass
    return torch.stack([x, y], dim=1) - size // 2


def test_batched_translation_draws_v2_random_affines_shifts_before_rounding():
    """v2.RandomAffine(translate=(a, a)) shifts by round(U(-a W, a W)) whole pixels; random_translate by U(-a W, a W).

    With 4000 images each whole-pixel shift k of -2..2 has probability p_k (0.1875 at +-2, 0.2083 otherwise, for
    a 16-pixel side and a = 0.15). Both histograms must lie within 6 sd of 4000 p_k (a correct sampler misses
    with probability below 1e-8 per count), and the batched shifts must fill the range continuously.
    """
    count, translate = 4000, 0.15
    images = one_pixel_images(count)
    batched = centroid_shift(random_translate(images, translate, torch.Generator().manual_seed(0)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transform = digit_augmentations(translate)
        reference = centroid_shift(torch.stack([transform(image) for image in images]))
    limit = translate * 16
    assert batched.abs().max() <= limit + 1e-4 and reference.abs().max() <= round(limit)
    assert torch.allclose(reference, reference.round(), atol=1e-4)  # v2 moves by whole pixels
    p = {k: (min(k + 0.5, limit) - max(k - 0.5, -limit)) / (2 * limit) for k in range(-2, 3)}
    for shifts in (batched.round(), reference.round()):
        for axis in range(2):
            for k, pk in p.items():
                observed = int((shifts[:, axis] == k).sum())
                assert abs(observed - count * pk) < 6 * math.sqrt(count * pk * (1 - pk)), (axis, k, observed)
    assert (batched - batched.round()).abs().max() > 0.4  # fractions kept, not rounded


def test_batched_translation_moves_each_image_on_its_own_and_is_reproducible():
    images = one_pixel_images(64)
    first = random_translate(images, 0.15, torch.Generator().manual_seed(1))
    again = random_translate(images, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert centroid_shift(first).unique(dim=0).shape[0] > 32
    torch.testing.assert_close(random_translate(images, 0.0), images)
    with pytest.raises(ValueError, match="translate"):
        random_translate(images, 1.5)


def test_colour_distortion_applies_to_colour_images_only():
    grey, colour = augmentations(16, channels=1), augmentations(16, channels=3)
    assert "ColorJitter" not in repr(grey) and "Grayscale" not in repr(grey)
    assert "ColorJitter" in repr(colour) and "Grayscale" in repr(colour)
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(augmentations(16, 3, crop=False, flip=False, colour=False)(images), images)
    with pytest.raises(ValueError, match="channels"):
        augmentations(16, channels=2)


# SimMIM
def test_simmim_predicts_every_patch_and_masks_the_requested_fraction():
    model = small_simmim()
    loss, pred, mask = model(torch.rand(4, 3, 8, 8), mask_ratio=0.6)
    assert pred.shape == (4, L, PATCH_DIM) and mask.shape == (4, L)
    assert torch.equal(mask.sum(dim=1), torch.full((4,), float(L - int(L * 0.4))))
    assert loss.dim() == 0 and loss.item() > 0


def test_simmim_encoder_sees_every_patch_with_the_mask_token_at_masked_ones():
    model, seen = small_simmim(), []
    model.encoder.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    _, _, mask = model(torch.rand(2, 3, 8, 8), 0.6, torch.Generator().manual_seed(0))
    (tokens,) = seen
    assert tokens.shape == (2, 1 + L, 32)
    expected = model.encoder.encoder_mask_token[0, 0] + model.encoder.pos_embed[0, 1:]  # [L, D]
    masked = mask.bool()
    torch.testing.assert_close(tokens[:, 1:][masked], expected.expand(2, -1, -1)[masked])
    assert not torch.allclose(tokens[:, 1:][~masked], expected.expand(2, -1, -1)[~masked])


def test_pixels_of_masked_patches_reach_neither_the_encoder_nor_the_prediction():
    model, imgs = small_simmim(), torch.rand(2, 3, 8, 8)
    _, pred, mask = model(imgs, 0.6, torch.Generator().manual_seed(1))
    latent, _ = model.forward_encoder(imgs, 0.6, torch.Generator().manual_seed(1))
    patches = patchify(imgs, 2).clone()
    patches[mask.bool()] = 100 * torch.randn_like(patches[mask.bool()])
    changed = unpatchify(patches, 2, 3)
    _, pred_changed, _ = model(changed, 0.6, torch.Generator().manual_seed(1))
    latent_changed, _ = model.forward_encoder(changed, 0.6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(latent_changed, latent, atol=1e-6, rtol=0)
    torch.testing.assert_close(pred_changed, pred, atol=1e-6, rtol=0)
    # The visible pixels do reach them.
    patches[~mask.bool()] += 1.0
    latent_visible, _ = model.forward_encoder(unpatchify(patches, 2, 3), 0.6, torch.Generator().manual_seed(1))
    assert not torch.allclose(latent_visible, latent, atol=1e-3)


def test_simmim_loss_ignores_predictions_and_pixels_at_visible_patches():
    model, imgs = small_simmim(), torch.rand(2, 3, 8, 8)
    _, pred, mask = model(imgs, 0.6, torch.Generator().manual_seed(2))
    visible = ~mask.bool()
    changed_pred, patches = pred.clone(), patchify(imgs, 2).clone()
    changed_pred[visible] += 10.0
    patches[visible] -= 10.0
    loss = model.forward_loss(imgs, pred, mask)
    assert torch.equal(model.forward_loss(imgs, changed_pred, mask), loss)
    assert torch.equal(model.forward_loss(unpatchify(patches, 2, 3), pred, mask), loss)
    changed_pred[mask.bool()] += 10.0
    assert not torch.equal(model.forward_loss(imgs, changed_pred, mask), loss)


def test_simmim_gradient_at_visible_predictions_is_exactly_zero():
    model, imgs = small_simmim(), torch.rand(2, 3, 8, 8)
    _, pred, mask = model(imgs, 0.6, torch.Generator().manual_seed(3))
    pred = pred.detach().requires_grad_()
    model.forward_loss(imgs, pred, mask).backward()
    assert torch.all(pred.grad[~mask.bool()] == 0)
    assert torch.all(pred.grad[mask.bool()] != 0)


def test_simmim_loss_is_the_mean_absolute_error_over_masked_pixels():
    model = small_simmim(image_size=4, patch_size=2, channels=1)  # L = 4 patches of 4 pixels
    imgs, pred = torch.zeros(1, 1, 4, 4), torch.ones(1, 4, 4)
    pred[0, 1] = -3.0
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert model.forward_loss(imgs, pred, mask).item() == pytest.approx((4 * 3 + 4 * 1) / 8)
    assert model.forward_loss(imgs, pred, torch.zeros(1, 4)).item() == 0.0


def test_simmim_features_are_the_unmasked_encoders_mean_patch_token():
    model, imgs = small_simmim(), torch.rand(3, 3, 8, 8)
    features = model.features(imgs)
    assert features.shape == (3, 32)
    with torch.no_grad():
        torch.testing.assert_close(features, model.encoder(imgs)[:, 1:].mean(dim=1))


def test_simmim_training_steps_reduce_the_loss():
    model = small_simmim().train()
    imgs = torch.rand(8, 3, 8, 8).cumsum(dim=-1) / 8  # smooth left-to-right ramps: predictable
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator, losses = torch.Generator().manual_seed(4), []
    for _ in range(20):
        loss, _, _ = model(imgs, 0.5, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


# SimCLR
def test_simclr_encoder_is_maes_encoder_with_the_same_initial_weights():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(MAEConfig(**SMALL))
    simclr = small_simclr()
    encoder = simclr.encoder.state_dict()
    assert set(encoder) == {name for name in mae.state_dict() if not name.startswith(("decoder", "mask_token"))}
    assert all(torch.equal(weight, mae.state_dict()[name]) for name, weight in encoder.items())
    imgs = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(simclr.features(imgs), mae.encode(imgs))


def test_simclr_features_are_one_vector_per_image_before_the_projection_head():
    model = small_simclr(channels=1)
    features = model.features(torch.rand(5, 1, 8, 8))
    assert features.shape == (5, 32) and not features.requires_grad


def test_simclr_loss_backpropagates_to_every_parameter():
    model = small_simclr().train()
    view1, view2 = two_views(torch.rand(4, 3, 8, 8), augmentations(8, 3), torch.Generator().manual_seed(0))
    loss = model(view1, view2)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_few_simclr_steps_lower_the_loss_on_a_fixed_batch():
    """Flipped and colour-jittered views (random crops of 8x8 noise share too little to match in 20 steps).
    The loss starts near log(2B - 1) = 2.71, where all embeddings look alike."""
    model = small_simclr().train()
    transform = augmentations(8, 3, crop=False)
    view1, view2 = two_views(torch.rand(8, 3, 8, 8), transform, torch.Generator().manual_seed(5))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = model(view1, view2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.85 * losses[0]


# the shared encoder
def test_vit_encoder_loads_an_maes_encoder_weights():
    torch.manual_seed(1)
    mae = MaskedAutoencoder(MAEConfig(**SMALL))
    vit = ViTEncoder(MAEConfig(**SMALL))
    missing, unexpected = vit.load_state_dict(mae.state_dict(), strict=False)
    assert missing == [] and all(name.startswith(("decoder", "mask_token")) for name in unexpected)
    imgs = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(vit.encode(imgs), mae.encode(imgs))
