"""Checks for Lab 3 (MAE): each compares a student's function with the reference in
``course_utils`` and, when they differ, tests the usual wrong answers to name the mistake.

The random exercises (``random_masking``, ``encode_visible``) are checked on their contract, never on one
draw order: ``expect_masking`` and ``expect_encoding`` accept any valid mask and judge the rest against it."""

from __future__ import annotations

import torch

from course_utils import vision
from course_utils.checks import Misconception, expect, expect_close, expect_input_untouched, expect_tensor, passed
from course_utils.models.mae import MAEConfig, MaskedAutoencoder, masked_mse, normalized_patches


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-5)


def _small_model(seed: int = 0, **overrides) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    sizes = dict(
        image_size=8,
        patch_size=2,
        channels=3,
        dim=32,
        depth=1,
        num_heads=4,
        decoder_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    return MaskedAutoencoder(MAEConfig(**{**sizes, **overrides})).eval()


def check_patchify(patchify) -> None:
    """``patchify(imgs, patch_size)``: ``[B, C, H, W] -> [B, L, p*p*C]``, row-major patches, (p, q, c) pixels."""
    imgs = torch.rand(2, 3, 8, 8)
    out = expect_input_untouched(patchify, imgs, 2)
    expect_tensor(out, "patchify(imgs [2, 3, 8, 8], 2)", shape=(2, 16, 12))
    expected = vision.patchify(imgs, 2)
    if not _same(out, expected):
        B, C, h, w, p = 2, 3, 4, 4, 2
        grid = imgs.reshape(B, C, h, p, w, p)
        expect(
            not _same(out, grid.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1)),
            "pixels inside a patch are in (c, p, q) order; MAE uses (p, q, c): channel last",
            "permute to [B, h, w, p, q, C] before the final reshape",
        )
        expect(
            not _same(out, grid.permute(0, 4, 2, 3, 5, 1).reshape(B, h * w, -1)),
            "patches are in column-major order; MAE numbers them row by row (left to right, then down)",
        )
        expect(
            not _same(out, grid.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, -1)),
            "unpatchify order transposed: p (row in patch) and q (column in patch) are swapped",
        )
        expect_close(
            out, expected, "patches differ from MAE's patchify", hint="reshape to [B, C, h, p, w, p], then permute"
        )
    passed("patchify: row-major patches, (p, q, c) pixel order")
    single = patchify(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
    expect(
        single[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0],
        f"patch 1 of a 4x4 ramp should be [2, 3, 6, 7], got {single[0, 1].tolist()}",
    )
    passed("patch 1 of a 4x4 image is its top-right 2x2 block")


def check_unpatchify(unpatchify) -> None:
    """``unpatchify(x, patch_size, channels)`` inverts the reference ``patchify``."""
    imgs = torch.rand(2, 3, 8, 8)
    patches = vision.patchify(imgs, 2)
    out = expect_input_untouched(unpatchify, patches, 2, 3)
    expect_tensor(out, "unpatchify(x [2, 16, 12], 2, 3)", shape=(2, 3, 8, 8))
    if not _same(out, imgs):
        expect(
            not _same(out, imgs.transpose(-1, -2)),
            "unpatchify order transposed: your image is the original flipped along its diagonal",
            "the grid of patches is [h, w] (rows first), and inside a patch [p, q] (rows first)",
        )
        expect_close(
            out, imgs, "unpatchify(patchify(imgs)) is not imgs", hint="undo each step of patchify in reverse order"
        )
    passed("unpatchify(patchify(imgs)) == imgs for colour images")
    grey = torch.rand(1, 1, 12, 12)
    expect_close(
        unpatchify(vision.patchify(grey, 4), 4, 1), grey, "the round trip fails for 1 channel and patch size 4"
    )
    passed("round trip for one channel and a different patch size")


def _expect_mask(mask: torch.Tensor, ids_restore: torch.Tensor, L_keep: int) -> None:
    """``mask`` and ``ids_restore`` ``[B, L]`` as ``random_masking`` returns them, with ``L_keep`` patches kept per row:
    a 0/1 mask removing ``L - L_keep`` per row, a permutation, and mask == 1 exactly where ``ids_restore >= L_keep``."""
    B, L = mask.shape
    mask = mask.float()
    expect(bool(((mask == 0) | (mask == 1)).all()), "mask must hold only 0 (kept) and 1 (removed)")
    removed = mask.sum(dim=1)
    if not torch.all(removed == L - L_keep):
        expect(
            not torch.all(removed == L_keep),
            "mask uses 1 for kept; MAE's mask is 1 for a removed patch, 0 for a kept one",
        )
        raise Misconception(
            f"every row must remove L - int(L * (1 - mask_ratio)) = {L - L_keep} of its {L} patches; "
            f"yours remove {sorted(set(removed.int().tolist()))[:5]}"
        )
    expect(not ids_restore.is_floating_point(), "ids_restore must hold integer indices (argsort returns them)")
    ids_restore = ids_restore.long()
    expect(
        torch.equal(ids_restore.sort(dim=1).values, torch.arange(L).expand(B, L)),
        f"ids_restore must be a permutation of 0..{L - 1} in every row",
        "ids_restore = argsort(ids_shuffle)",
    )
    expected = (ids_restore >= L_keep).float()
    if not torch.equal(mask, expected):
        shuffled = torch.cat([torch.zeros(B, L_keep), torch.ones(B, L - L_keep)], dim=1)
        expect(
            not torch.equal(mask, shuffled),
            "forgot to unshuffle the mask: it must be in the original patch order",
            "build it in shuffled order (zeros first), then gather with ids_restore",
        )
        expect(
            not torch.equal(mask, 1 - expected),
            "mask uses 1 for kept; MAE's mask is 1 for a removed patch, 0 for a kept one",
        )
        expect(
            not torch.equal(mask, (ids_restore.argsort(dim=1) >= L_keep).float()),
            "forgot to unshuffle: ids_restore is argsort(ids_shuffle), not ids_shuffle",
        )
        raise Misconception(
            "mask and ids_restore disagree: the removed patches (mask == 1) are those with "
            f"ids_restore >= L_keep = {L_keep}\nHint: take both from one shuffle"
        )


def _triple(result, call: str) -> tuple:
    expect(
        isinstance(result, (tuple, list)) and len(result) == 3,
        f"{call} should return a tuple of three tensors, got {type(result).__name__}",
    )
    return tuple(result)


def expect_masking(x: torch.Tensor, mask_ratio: float, result, call: str = "random_masking") -> None:
    """``result = random_masking(x, mask_ratio, ...)`` keeps the contract, whatever the draw:
    ``int(L * (1 - mask_ratio))`` patches kept per row, mask 1 = removed, ``ids_restore`` a permutation that
    agrees with the mask, and ``x_visible`` the kept rows of ``x`` in the order ``ids_restore`` gives them."""
    B, L, D = x.shape
    L_keep = int(L * (1 - mask_ratio))
    visible, mask, ids_restore = _triple(result, call)
    expect_tensor(visible, f"x_visible of {call}", shape=(B, L_keep, D))
    expect_tensor(mask, f"mask of {call}", shape=(B, L))
    expect_tensor(ids_restore, f"ids_restore of {call}", shape=(B, L))
    _expect_mask(mask, ids_restore, L_keep)
    ids_shuffle = ids_restore.long().argsort(dim=1)
    kept = x.gather(1, ids_shuffle[:, :L_keep, None].expand(-1, -1, D))
    if not _same(visible, kept):
        in_patch_order = x.gather(1, ids_shuffle[:, :L_keep].sort(dim=1).values[..., None].expand(-1, -1, D))
        expect(
            not _same(visible, in_patch_order),
            "x_visible is in patch order, but ids_restore expects it shuffled: "
            "x_visible[:, i] must be the patch at ids_shuffle[:, i] (ids_shuffle = argsort(ids_restore))",
            "gather x with ids_keep = ids_shuffle[:, :L_keep]",
        )
        raise Misconception(
            "x_visible is not x at the kept positions (mask == 0) in the order ids_restore gives them"
            "\nHint: x_visible = gather(x, 1, ids_keep), the same ids_keep that decided the mask"
        )


def check_random_masking(random_masking) -> None:
    """``random_masking(x, mask_ratio, generator)``: the contract's invariants, and the generator decides the draw."""
    x = torch.randn(3, 16, 5)
    first = expect_input_untouched(random_masking, x, 0.75, torch.Generator().manual_seed(0))
    expect_masking(x, 0.75, first, "random_masking(x [3, 16, 5], 0.75, generator)")
    passed("12 of 16 patches removed per row; mask (1 = removed), ids_restore and x_visible agree")
    half = torch.randn(2, 10, 3)
    result = random_masking(half, 0.5, torch.Generator().manual_seed(1))
    expect_masking(half, 0.5, result, "random_masking(x [2, 10, 3], 0.5, generator)")
    passed("keeps int(L * (1 - mask_ratio)) patches")
    again = _triple(random_masking(x, 0.75, torch.Generator().manual_seed(0)), "random_masking")
    expect(
        all(torch.equal(a, b) for a, b in zip(first, again)),
        "two generators seeded alike gave different results: draw all the randomness from generator",
        "torch.rand(B, L, generator=generator)",
    )
    # A correct random_masking draws the same 3 masks for another seed with probability C(16, 4)**-3 < 2e-10.
    other = _triple(random_masking(x, 0.75, torch.Generator().manual_seed(1)), "random_masking")
    expect(not torch.equal(other[1], first[1]), "generators seeded differently gave the same mask: it must be random")
    passed("the generator decides the draw: same seed, same result; another seed, another mask")


def expect_encoding(model: MaskedAutoencoder, imgs: torch.Tensor, mask_ratio: float, result, call="encode_visible"):
    """``result = encode_visible(model, imgs, mask_ratio, ...)``: a valid mask and ``ids_restore`` (any draw), and
    the latent that ``model``'s own modules give for the visible patches they name."""
    B, L, D = imgs.shape[0], model.config.num_patches, model.config.dim
    L_keep = int(L * (1 - mask_ratio))
    latent, mask, ids_restore = _triple(result, call)
    expect_tensor(latent, "latent")
    expect(
        L_keep == L or latent.shape[1] != 1 + L,
        "the encoder saw all patches; MAE's encoder sees only the visible ones (and cls)",
    )
    expect(latent.shape[1] != L_keep, "forgot the cls token: prepend model.cls_token (plus its position, row 0)")
    expect_tensor(latent, "latent", shape=(B, 1 + L_keep, D))
    expect_tensor(mask, "mask", shape=(B, L))
    expect_tensor(ids_restore, "ids_restore", shape=(B, L))
    _expect_mask(mask, ids_restore, L_keep)
    with torch.no_grad():
        patches = model.patch_embed(vision.patchify(imgs, model.config.patch_size))  # [B, L, D], patch order
        ids_keep = ids_restore.long().argsort(dim=1)[:, :L_keep, None].expand(-1, -1, D)
        visible = (patches + model.pos_embed[:, 1:]).gather(1, ids_keep)
        cls = (model.cls_token + model.pos_embed[:, :1]).expand(B, -1, -1)
        expected = model.encoder(torch.cat([cls, visible], dim=1))
        if not _same(latent, expected):
            unplaced = patches.gather(1, ids_keep)  # the visible patches without their positions
            no_positions = model.encoder(torch.cat([model.cls_token.expand(B, -1, -1), unplaced], dim=1))
            expect(
                not _same(latent, no_positions),
                "forgot the position embeddings: add model.pos_embed[:, 1:] before masking",
            )
            late = model.encoder(torch.cat([cls, unplaced + model.pos_embed[:, 1 : 1 + L_keep]], dim=1))
            expect(
                not _same(latent, late),
                f"position embeddings added after masking: positions 1..{L_keep} went to the {L_keep} kept patches",
                "add pos_embed to all L patches first, then mask",
            )
            expect_close(
                latent,
                expected,
                "latent is not model.encoder on cls + the visible patches (embedded, with positions), "
                "in the order ids_restore gives them",
            )


def check_encode_visible(encode_visible) -> None:
    """``encode_visible(model, imgs, mask_ratio, generator)``: the encoder's output for the patches its mask keeps."""
    model, imgs = _small_model(), torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        first = expect_input_untouched(encode_visible, model, imgs, 0.75, torch.Generator().manual_seed(0))
        expect_encoding(model, imgs, 0.75, first, "encode_visible(model, imgs [2, 3, 8, 8], 0.75, generator)")
        passed("the encoder runs on cls + the 4 visible patches (with their positions) that mask and ids_restore name")
        again = _triple(encode_visible(model, imgs, 0.75, torch.Generator().manual_seed(0)), "encode_visible")
        expect(
            torch.equal(again[1], first[1]) and torch.equal(again[2], first[2]),
            "two generators seeded alike gave different masks: pass generator on to random_masking",
        )
    passed("the generator decides the mask")


def check_decoder_input(decoder_input) -> None:
    """``decoder_input(model, latent, ids_restore)`` equals ``model.decoder_input``."""
    model = _small_model()
    latent = torch.randn(2, 5, 32)
    _, _, ids_restore = vision.random_masking(torch.zeros(2, 16, 1), 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = expect_input_untouched(decoder_input, model, latent, ids_restore)
        expected = model.decoder_input(latent, ids_restore)
        expect_tensor(out, "decoder input", shape=(2, 17, 16))
        if not _same(out, expected):
            x = model.decoder_embed(latent)
            tokens = torch.cat([x[:, 1:], model.mask_token.expand(2, 12, -1)], dim=1)
            unshuffled = tokens.gather(1, ids_restore[..., None].expand(-1, -1, 16))
            position = model.decoder_pos_embed
            expect(
                not _same(out, torch.cat([x[:, :1], tokens], 1) + position),
                "forgot to unshuffle: gather with ids_restore before adding positions",
            )
            wrong = tokens.gather(1, ids_restore.argsort(1)[..., None].expand(-1, -1, 16))
            expect(
                not _same(out, torch.cat([x[:, :1], wrong], 1) + position),
                "unshuffled with ids_shuffle (argsort of ids_restore); use ids_restore itself",
            )
            expect(
                not _same(out, torch.cat([x[:, :1], unshuffled], 1)),
                "forgot the decoder position embeddings (model.decoder_pos_embed)",
            )
            first = torch.cat([model.mask_token.expand(2, 12, -1), x[:, 1:]], dim=1).gather(
                1, ids_restore[..., None].expand(-1, -1, 16)
            )
            expect(
                not _same(out, torch.cat([x[:, :1], first], 1) + position),
                "mask tokens placed before the visible tokens; append them after",
            )
            expect_close(out, expected, "decoder input differs from model.decoder_input")
    passed("mask tokens appended, unshuffled with ids_restore, cls kept first, positions added")


def check_mae_loss(mae_loss) -> None:
    """``mae_loss(imgs, pred, mask, patch_size, norm_pix_loss)`` equals the reference loss."""
    generator = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 8, 8, generator=generator)
    pred = torch.randn(2, 16, 12, generator=generator)
    _, mask, _ = vision.random_masking(torch.zeros(2, 16, 1), 0.75, generator)
    target = vision.patchify(imgs, 2)
    for norm_pix_loss in (False, True):
        loss = expect_input_untouched(mae_loss, imgs, pred, mask, 2, norm_pix_loss)
        expect_tensor(loss, "loss", shape=())
        goal = normalized_patches(target) if norm_pix_loss else target
        expected = masked_mse(goal, pred, mask)
        if not _same(loss, expected):
            expect(
                not _same(loss, ((pred - goal) ** 2).mean()),
                "loss includes visible patches; average over removed patches (mask == 1) only",
            )
            expect(
                not _same(loss, masked_mse(goal, pred, 1 - mask)),
                "mask uses 1 for kept: you scored the visible patches, not the removed ones",
            )
            expect(
                not _same(loss, masked_mse(target, pred, mask)),
                "norm_pix_loss ignored: normalise each target patch by its own mean and std",
            )
            if norm_pix_loss:
                biased = (target - target.mean(-1, keepdim=True)) / (
                    target.var(-1, keepdim=True, unbiased=False) + 1e-6
                ) ** 0.5
                expect(
                    not _same(loss, masked_mse(biased, pred, mask)),
                    "use torch's default (unbiased) var, as the official MAE code does",
                )
                whole = (target - target.mean()) / (target.var() + 1e-6) ** 0.5
                expect(
                    not _same(loss, masked_mse(whole, pred, mask)),
                    "normalise per patch (over its last dimension), not over the whole batch",
                )
            expect_close(loss, expected, f"loss differs from the reference (norm_pix_loss={norm_pix_loss})")
        passed(f"masked-only MSE with norm_pix_loss={norm_pix_loss}")
    changed = pred.clone()
    changed[~mask.bool()] = 0.0
    expect(
        torch.allclose(mae_loss(imgs, changed, mask, 2, False), mae_loss(imgs, pred, mask, 2, False)),
        "loss includes visible patches: changing their prediction changed the loss",
    )
    passed("changing predictions of visible patches leaves the loss unchanged")


# The reference code each exercise must not call: the grader ends a call into any of these with 0 points
# (course_utils.grading.worker). References of other exercises and earlier labs stay allowed.
REFERENCES = {
    "patchify": ("course_utils.vision:patchify",),
    "unpatchify": ("course_utils.vision:unpatchify",),
    "random_masking": ("course_utils.vision:random_masking",),
    "encode_visible": (
        "course_utils.models.mae:MaskedAutoencoder.forward_encoder",
        "course_utils.models.mae:MaskedAutoencoder.embed_patches",
        "course_utils.models.mae:MaskedAutoencoder.encode_tokens",
    ),
    "decoder_input": (
        "course_utils.models.mae:MaskedAutoencoder.decoder_input",
        "course_utils.models.mae:MaskedAutoencoder.forward_decoder",
    ),
    "mae_loss": (
        "course_utils.models.mae:MaskedAutoencoder.forward_loss",
        "course_utils.models.mae:masked_mse",
        "course_utils.models.mae:normalized_patches",
    ),
}
