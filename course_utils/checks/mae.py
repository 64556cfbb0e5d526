"""Checks for Lab 3 (MAE): each compares a student's function with the reference in
``course_utils`` and, when they differ, tests the usual wrong answers to name the mistake."""

from __future__ import annotations

import torch

from course_utils.checks import expect, expect_close, expect_input_untouched, expect_tensor, passed
from course_utils import vision
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


def check_random_masking(random_masking) -> None:
    """``random_masking(x, mask_ratio, generator)`` matches the reference for the same noise."""
    x = torch.randn(3, 16, 5)
    visible, mask, ids_restore = expect_input_untouched(random_masking, x, 0.75, torch.Generator().manual_seed(0))
    ref_visible, ref_mask, ref_restore = vision.random_masking(x, 0.75, torch.Generator().manual_seed(0))
    expect_tensor(visible, "x_visible", shape=(3, 4, 5))
    expect_tensor(mask, "mask", shape=(3, 16))
    expect_tensor(ids_restore, "ids_restore", shape=(3, 16))
    expect(not _same(mask, 1 - ref_mask), "mask uses 1 for kept; MAE's mask is 1 for a removed patch, 0 for a kept one")
    ids_shuffle = ref_restore.argsort(dim=1)
    shuffled_mask = torch.ones(3, 16)
    shuffled_mask[:, :4] = 0
    expect(
        not _same(mask, shuffled_mask),
        "forgot to unshuffle the mask: it must be in the original patch order",
        "build it in shuffled order (zeros first), then gather with ids_restore",
    )
    expect(
        not _same(ids_restore, ids_shuffle), "forgot to unshuffle: ids_restore is argsort(ids_shuffle), not ids_shuffle"
    )
    expect(
        not _same(mask, (ref_restore < 12).float()),
        "you kept the patches with the highest noise; keep the lowest (the first ones after argsort)",
    )
    expect_close(
        mask,
        ref_mask,
        "mask differs from the reference for the same noise",
        hint="noise = torch.rand(B, L, generator=generator)",
    )
    expect(_same(ids_restore, ref_restore), "ids_restore differs from argsort(argsort(noise))")
    expect_close(visible, ref_visible, "x_visible is not x gathered at the kept indices, in shuffled order")
    passed("mask (1 = removed), ids_restore and x_visible match the reference")
    _, mask_half, _ = random_masking(torch.randn(2, 10, 3), 0.5, torch.Generator().manual_seed(1))
    expect(
        torch.all(mask_half.sum(dim=1) == 5), "with L = 10 and mask_ratio = 0.5, keep int(L * (1 - 0.5)) = 5 patches"
    )
    passed("keeps int(L * (1 - mask_ratio)) patches")


def check_encode_visible(encode_visible) -> None:
    """``encode_visible(model, imgs, mask_ratio, generator)`` equals ``model.forward_encoder``."""
    model, imgs = _small_model(), torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        latent, mask, ids_restore = encode_visible(model, imgs, 0.75, torch.Generator().manual_seed(0))
        ref_latent, ref_mask, _ = model.forward_encoder(imgs, 0.75, torch.Generator().manual_seed(0))
        expect_tensor(latent, "latent")
        expect(
            latent.shape[1] != 1 + 16, "the encoder saw all patches; MAE's encoder sees only the visible ones (and cls)"
        )
        expect(latent.shape[1] != 4, "forgot the cls token: prepend model.cls_token (plus its position, row 0)")
        expect_tensor(latent, "latent", shape=(2, 5, 32))
        expect(
            _same(mask, ref_mask),
            "mask differs: call random_masking(x, mask_ratio, generator) once, on the embedded patches",
        )
        if not _same(latent, ref_latent):
            x, _, _ = vision.random_masking(
                model.patch_embed(vision.patchify(imgs, 2)), 0.75, torch.Generator().manual_seed(0)
            )
            cls = model.cls_token.expand(2, -1, -1)
            no_positions = model.encoder(torch.cat([cls, x], dim=1))
            expect(
                not _same(latent, no_positions),
                "forgot the position embeddings: add model.pos_embed[:, 1:] before masking",
            )
            late = model.encoder(torch.cat([cls, x + model.pos_embed[:, 1 : 1 + 4]], dim=1))
            expect(
                not _same(latent, late),
                "position embeddings added after masking: the first 4 positions went to 4 random patches",
                "add pos_embed to all L patches first, then mask",
            )
            expect_close(latent, ref_latent, "latent differs from model.forward_encoder")
    passed("the encoder runs on cls + visible patches only and matches model.forward_encoder")


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
