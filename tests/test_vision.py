"""course_utils.vision: patch order, masking invariants, position embeddings and the offline data."""

import math

import numpy as np
import pytest
import torch

from course_utils.vision import (
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    digits,
    patchify,
    photo_crops,
    place_digits,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)


def official_patchify(imgs, p):
    """facebookresearch/mae models_mae.py, written independently with einsum."""
    B, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, p * p * C)


def official_unpatchify(x, p, C):
    B, L, _ = x.shape
    h = w = int(L**0.5)
    x = x.reshape(B, h, w, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, C, h * p, w * p)


def official_sincos(dim, grid_size):
    """MAE's util/pos_embed.py get_2d_sincos_pos_embed, in NumPy."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


@pytest.mark.parametrize("channels,size,p", [(1, 8, 2), (3, 12, 4), (3, 32, 8)])
def test_patchify_matches_the_official_einsum_formulation(channels, size, p):
    imgs = torch.randn(2, channels, size, size)
    assert torch.equal(patchify(imgs, p), official_patchify(imgs, p))


def test_unpatchify_matches_the_official_einsum_formulation():
    x = torch.randn(3, 16, 4 * 4 * 3)
    assert torch.equal(unpatchify(x, 4, 3), official_unpatchify(x, 4, 3))


@pytest.mark.parametrize("channels,height,width,p", [(1, 8, 8, 2), (3, 12, 8, 4), (3, 16, 16, 16)])
def test_unpatchify_inverts_patchify(channels, height, width, p):
    imgs = torch.randn(2, channels, height, width)
    patches = patchify(imgs, p)
    assert torch.equal(unpatchify(patches, p, channels, grid_size=(height // p, width // p)), imgs)


def test_patches_are_row_major_with_pixels_in_row_column_channel_order():
    # Pixel value encodes (channel, row, column): patch 1 is the top row's second patch.
    C, H, W, p = 2, 4, 4, 2
    imgs = torch.tensor([[[100 * c + 10 * r + k for k in range(W)] for r in range(H)] for c in range(C)]).float()[None]
    patches = patchify(imgs, p)
    assert patches.shape == (1, 4, p * p * C)
    # Top-right patch covers rows 0-1, columns 2-3; inside it (p, q, c) order: channel varies fastest.
    expected = [0 * 10 + 2, 100 + 2, 3, 103, 12, 112, 13, 113]
    assert patches[0, 1].tolist() == expected


@pytest.mark.parametrize("size,p", [(10, 4), (8, 3)])
def test_patchify_rejects_a_patch_size_that_does_not_divide_the_image(size, p):
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 1, size, size), p)


def test_unpatchify_rejects_wrong_widths_and_non_square_counts():
    with pytest.raises(ValueError, match="channels"):
        unpatchify(torch.zeros(1, 4, 12), 2, 1)
    with pytest.raises(ValueError, match="grid_size"):
        unpatchify(torch.zeros(1, 6, 4), 2, 1)


@pytest.mark.parametrize("mask_ratio", [-0.1, 1.0, 1.5])
def test_random_masking_rejects_ratios_outside_zero_to_one(mask_ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(torch.zeros(1, 4, 2), mask_ratio)


@pytest.mark.parametrize("L,mask_ratio", [(16, 0.75), (196, 0.75), (10, 0.5), (7, 0.0), (64, 0.9)])
def test_random_masking_keeps_int_of_L_times_one_minus_ratio(L, mask_ratio):
    x = torch.randn(3, L, 5)
    visible, mask, ids_restore = random_masking(x, mask_ratio, torch.Generator().manual_seed(0))
    keep = int(L * (1 - mask_ratio))
    assert visible.shape == (3, keep, 5)
    assert mask.shape == ids_restore.shape == (3, L)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(L - keep)))


def test_mask_marks_removed_patches_with_one_in_original_order():
    # Patch i of the input holds the value i, so a visible patch names its own position.
    B, L = 4, 20
    x = torch.arange(L).float().repeat(B, 1).unsqueeze(-1)  # [B, L, 1]
    visible, mask, _ = random_masking(x, 0.6, torch.Generator().manual_seed(1))
    for b in range(B):
        kept_positions = set(visible[b, :, 0].long().tolist())
        assert kept_positions == set(torch.nonzero(mask[b] == 0).flatten().tolist())


def test_ids_restore_unshuffles_visible_then_removed_back_to_the_original():
    B, L, D = 3, 12, 4
    x = torch.randn(B, L, D)
    visible, mask, ids_restore = random_masking(x, 0.75, torch.Generator().manual_seed(2))
    ids_shuffle = ids_restore.argsort(dim=1)
    removed = x.gather(1, ids_shuffle[:, visible.shape[1] :, None].expand(-1, -1, D))
    restored = torch.cat([visible, removed], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, D))
    assert torch.equal(restored, x)


def test_noise_is_argsorted_and_the_lowest_noise_is_kept():
    x = torch.randn(2, 10, 3)
    _, mask, ids_restore = random_masking(x, 0.7, torch.Generator().manual_seed(3))
    noise = torch.rand(2, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ids_restore, noise.argsort(dim=1).argsort(dim=1))
    lowest_three = noise.argsort(dim=1)[:, :3]
    assert torch.all(mask.gather(1, lowest_three) == 0)


def test_every_position_is_removed_with_probability_mask_ratio():
    # Each position is removed with p = 0.75 independently of its index. Over n = 4000 draws,
    # the count's std is sqrt(n p (1-p)) = 27.4; a 5-sigma bound allows +-137 per position.
    n, L, p = 4000, 16, 0.75
    _, mask, _ = random_masking(torch.zeros(n, L, 1), p, torch.Generator().manual_seed(4))
    counts = mask.sum(dim=0)
    bound = 5 * math.sqrt(n * p * (1 - p))
    assert torch.all((counts - n * p).abs() < bound), counts


def test_masks_differ_between_samples_and_repeat_for_a_seed():
    x = torch.zeros(8, 16, 1)
    _, first, _ = random_masking(x, 0.75, torch.Generator().manual_seed(5))
    _, again, _ = random_masking(x, 0.75, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert len({tuple(row.tolist()) for row in first}) > 1


@pytest.mark.parametrize("dim,grid_size", [(16, 4), (64, 7), (128, 2)])
def test_sincos_matches_the_official_numpy_code(dim, grid_size):
    ours = sincos_pos_embed_2d(dim, grid_size)
    assert ours.shape == (grid_size**2, dim) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), official_sincos(dim, grid_size), atol=1e-6)


def test_sincos_positions_are_distinct_and_reject_bad_dims():
    embed = sincos_pos_embed_2d(32, 5)
    assert torch.cdist(embed, embed).add(torch.eye(25)).min() > 1e-3
    with pytest.raises(ValueError, match="dim"):
        sincos_pos_embed_2d(30, 4)


def test_digits_are_resized_images_in_unit_range_with_labels():
    images, labels = digits(16)
    assert images.shape == (1797, 1, 16, 16) and labels.shape == (1797,)
    assert images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == set(range(10))


def test_photo_crops_are_reproducible_colour_images_from_offline_photos():
    crops = photo_crops(6, 16, seed=3)
    assert crops.shape == (6, 3, 16, 16) and 0 <= crops.min() and crops.max() <= 1
    assert torch.equal(crops, photo_crops(6, 16, seed=3))
    assert not torch.equal(crops, photo_crops(6, 16, seed=4))
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    with pytest.raises(ValueError, match="name"):
        photo_crops(2, 16, names=("lily",))


def test_place_digits_pastes_each_digit_whole_at_its_own_offset():
    digits = torch.rand(200, 1, 4, 4) + 0.1  # no zero pixel: the digit's box is exactly the non-zero region
    placed = place_digits(digits, 7, torch.Generator().manual_seed(0))
    assert placed.shape == (200, 1, 7, 7)
    offsets = set()
    for digit, canvas in zip(digits, placed):
        rows, columns = canvas[0].nonzero(as_tuple=True)
        top, left = int(rows.min()), int(columns.min())
        assert torch.equal(canvas[:, top : top + 4, left : left + 4], digit)
        assert float(canvas.sum()) == pytest.approx(float(digit.sum()), rel=1e-6)
        offsets.add((top, left))
    assert offsets == {(r, c) for r in range(4) for c in range(4)}  # every offset 0..3 turns up in 200 draws


def test_place_digits_is_reproducible_and_rejects_a_small_canvas():
    digits = torch.rand(5, 1, 4, 4)
    first = place_digits(digits, 8, torch.Generator().manual_seed(3))
    assert torch.equal(first, place_digits(digits, 8, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="canvas_size"):
        place_digits(digits, 3)
