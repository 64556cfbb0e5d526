"""Lab 3 (MAE) graded as submitted: correct alternatives keep every mark, the usual mistakes and the
reference-calling cheats earn nothing.

Each submission answers every exercise with a different variant (exercises are graded independently), so
four gradings cover them all. Mistakes that only a hidden test or a further check catches run through the
lab's test cells directly, without the grader, which is quicker.
"""

from __future__ import annotations

import pytest
import torch
from submissions import full_marks, grade, points, submission

from course_utils import vision
from course_utils.checks import Misconception
from course_utils.checks.mae import check_patchify, check_random_masking
from course_utils.grading import SOLUTIONS
from course_utils.grading.course import read_notebook
from course_utils.grading.exercises import read_lab

LAB = "lab03_mae"

# Correct work written differently from the solution; each random_masking draws in another order.
EINSUM_PATCHIFY = """
def patchify(imgs, patch_size):
    B, C, H, W = imgs.shape
    p = patch_size
    x = torch.einsum("nchpwq->nhwpqc", imgs.reshape(B, C, H // p, p, W // p, p))
    return x.reshape(B, -1, p * p * C)
"""

UNFOLD_PATCHIFY = """
def patchify(imgs, patch_size):
    B, C, H, W = imgs.shape
    p = patch_size
    x = imgs.unfold(2, p, p).unfold(3, p, p)  # [B, C, h, w, p, q]
    return x.permute(0, 2, 3, 4, 5, 1).reshape(B, -1, p * p * C)
"""

EINSUM_UNPATCHIFY = """
def unpatchify(x, patch_size, channels):
    B, L, _ = x.shape
    p, h = patch_size, int(round(L**0.5))
    x = torch.einsum("nhwpqc->nchpwq", x.reshape(B, h, h, p, p, channels))
    return x.reshape(B, channels, h * p, h * p)
"""

RANDPERM_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.stack([torch.randperm(L, generator=generator) for _ in range(B)])
    ids_restore = ids_shuffle.argsort(dim=1)
    x_visible = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    return x_visible, (ids_restore >= keep).float(), ids_restore
"""

DESCENDING_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.rand(B, L, generator=generator).argsort(dim=1, descending=True)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones(B, L)
    mask[:, :keep] = 0
    return x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D)), mask.gather(1, ids_restore), ids_restore
"""

ENCODE_WITH_OWN_MASKING = """
def encode_visible(model, imgs, mask_ratio, generator=None):
    x = model.patch_embed(vision.patchify(imgs, model.config.patch_size)) + model.pos_embed[:, 1:]
    x, mask, ids_restore = random_masking(x, mask_ratio, generator)
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    return model.encoder(torch.cat([cls, x], dim=1)), mask, ids_restore
"""

# Keeps the visible patches in patch order, with an ids_restore to match.
ENCODE_IN_PATCH_ORDER = """
def encode_visible(model, imgs, mask_ratio, generator=None):
    x = model.patch_embed(vision.patchify(imgs, model.config.patch_size)) + model.pos_embed[:, 1:]
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    removed = torch.rand(B, L, generator=generator).topk(L - keep, dim=1).indices
    mask = torch.zeros(B, L).scatter(1, removed, 1.0)
    ids_shuffle = mask.argsort(dim=1, stable=True)  # kept patches first, each group in patch order
    ids_restore = ids_shuffle.argsort(dim=1)
    visible = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(B, -1, -1)
    return model.encoder(torch.cat([cls, visible], dim=1)), mask, ids_restore
"""

SCATTER_DECODER_INPUT = """
def decoder_input(model, latent, ids_restore):
    x = model.decoder_embed(latent)
    B, L = ids_restore.shape
    keep, width = x.shape[1] - 1, x.shape[-1]
    ids_keep = ids_restore.argsort(dim=1)[:, :keep, None].expand(-1, -1, width)
    patches = model.mask_token.repeat(B, L, 1).scatter(1, ids_keep, x[:, 1:])
    return torch.cat([x[:, :1], patches], dim=1) + model.decoder_pos_embed
"""

INDEXING_MAE_LOSS = """
def mae_loss(imgs, pred, mask, patch_size, norm_pix_loss=False):
    target = vision.patchify(imgs, patch_size)
    if norm_pix_loss:
        var, mean = torch.var_mean(target, dim=-1, keepdim=True)
        target = (target - mean) / torch.sqrt(var + 1e-6)
    return ((pred - target) ** 2).mean(dim=-1)[mask.bool()].mean()
"""

# The mistakes the visible checks name.
CHANNEL_FIRST_PATCHIFY = """
def patchify(imgs, patch_size):
    B, C, H, W = imgs.shape
    p = patch_size
    return imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, p * p * C)
"""

TRANSPOSED_UNPATCHIFY = """
def unpatchify(x, patch_size, channels):
    B, L, _ = x.shape
    p, h = patch_size, int(round(L**0.5))
    x = x.reshape(B, h, h, p, p, channels).permute(0, 5, 2, 4, 1, 3)  # rows and columns swapped
    return x.reshape(B, channels, h * p, h * p)
"""

SHUFFLED_MASK_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.rand(B, L, generator=generator).argsort(dim=1)
    mask = torch.ones(B, L)
    mask[:, :keep] = 0  # left in shuffled order
    return x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D)), mask, ids_shuffle.argsort(dim=1)
"""

LATE_POSITIONS_ENCODE = """
def encode_visible(model, imgs, mask_ratio, generator=None):
    x = model.patch_embed(vision.patchify(imgs, model.config.patch_size))
    x, mask, ids_restore = vision.random_masking(x, mask_ratio, generator)
    x = x + model.pos_embed[:, 1 : 1 + x.shape[1]]
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    return model.encoder(torch.cat([cls, x], dim=1)), mask, ids_restore
"""

NO_UNSHUFFLE_DECODER_INPUT = """
def decoder_input(model, latent, ids_restore):
    x = model.decoder_embed(latent)
    B, L = ids_restore.shape
    tokens = torch.cat([x, model.mask_token.expand(B, L + 1 - x.shape[1], -1)], dim=1)
    return tokens + model.decoder_pos_embed
"""

ALL_PATCHES_MAE_LOSS = """
def mae_loss(imgs, pred, mask, patch_size, norm_pix_loss=False):
    target = vision.patchify(imgs, patch_size)
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    return ((pred - target) ** 2).mean()
"""

# Mistakes that the other checks, or only the hidden tests, catch.
CHANNEL_FIRST_UNPATCHIFY = """
def unpatchify(x, patch_size, channels):
    B, L, _ = x.shape
    p, h = patch_size, int(round(L**0.5))
    x = x.reshape(B, h, h, channels, p, p).permute(0, 3, 1, 4, 2, 5)  # undoes (c, p, q) pixels, not (p, q, c)
    return x.reshape(B, channels, h * p, h * p)
"""

SQUARE_ONLY_PATCHIFY = """
def patchify(imgs, patch_size):
    B, C, H, W = imgs.shape
    p, h = patch_size, H // patch_size
    return imgs.reshape(B, C, h, p, h, p).permute(0, 2, 4, 3, 5, 1).reshape(B, h * h, p * p * C)
"""

ONE_PERMUTATION_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.randperm(L, generator=generator).expand(B, L)  # one draw for the whole batch
    ids_restore = ids_shuffle.argsort(dim=1)
    x_visible = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    return x_visible, (ids_restore >= keep).float(), ids_restore
"""

BLOCK_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    start = torch.randint(L, (B, 1), generator=generator)
    ids_shuffle = (start + torch.arange(L)) % L  # keeps a cyclic run of patches from a random start
    ids_restore = ids_shuffle.argsort(dim=1)
    x_visible = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    return x_visible, (ids_restore >= keep).float(), ids_restore
"""

GLOBAL_RNG_MASKING = """
def random_masking(x, mask_ratio, generator=None):
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.rand(B, L).argsort(dim=1)  # generator not used
    ids_restore = ids_shuffle.argsort(dim=1)
    x_visible = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    return x_visible, (ids_restore >= keep).float(), ids_restore
"""

NO_CLS_ENCODE = """
def encode_visible(model, imgs, mask_ratio, generator=None):
    x = model.patch_embed(vision.patchify(imgs, model.config.patch_size)) + model.pos_embed[:, 1:]
    x, mask, ids_restore = vision.random_masking(x, mask_ratio, generator)
    return model.encoder(x), mask, ids_restore
"""

NO_POSITIONS_DECODER_INPUT = """
def decoder_input(model, latent, ids_restore):
    x = model.decoder_embed(latent)
    B, L = ids_restore.shape
    patches = torch.cat([x[:, 1:], model.mask_token.expand(B, L + 1 - x.shape[1], -1)], dim=1)
    patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :1], patches], dim=1)
"""

PIXELS_ONLY_MAE_LOSS = """
def mae_loss(imgs, pred, mask, patch_size, norm_pix_loss=False):
    per_patch = ((pred - vision.patchify(imgs, patch_size)) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()
"""

# The exercise's own reference, called under the exercise's name.
CHEATS = {
    "patchify": "def patchify(imgs, patch_size):\n    return vision.patchify(imgs, patch_size)\n",
    "unpatchify": "def unpatchify(x, patch_size, channels):\n    return vision.unpatchify(x, patch_size, channels)\n",
    "random_masking": (
        "def random_masking(x, mask_ratio, generator=None):\n"
        "    return vision.random_masking(x, mask_ratio, generator)\n"
    ),
    "encode_visible": (
        "def encode_visible(model, imgs, mask_ratio, generator=None):\n"
        "    return model.forward_encoder(imgs, mask_ratio, generator)\n"
    ),
    "decoder_input": (
        "def decoder_input(model, latent, ids_restore):\n    return model.decoder_input(latent, ids_restore)\n"
    ),
    "mae_loss": (
        "from course_utils.models.mae import masked_mse, normalized_patches\n\n"
        "def mae_loss(imgs, pred, mask, patch_size, norm_pix_loss=False):\n"
        "    target = vision.patchify(imgs, patch_size)\n"
        "    return masked_mse(normalized_patches(target) if norm_pix_loss else target, pred, mask)\n"
    ),
}


def graded(tmp_path_factory, cells: dict[str, str]):
    return grade(submission(tmp_path_factory.mktemp("submission"), LAB, cells))


@pytest.fixture(scope="module")
def alternatives(tmp_path_factory):
    return graded(
        tmp_path_factory,
        {
            "patchify": EINSUM_PATCHIFY,
            "unpatchify": EINSUM_UNPATCHIFY,
            "random_masking": RANDPERM_MASKING,
            "encode_visible": ENCODE_WITH_OWN_MASKING,
            "decoder_input": SCATTER_DECODER_INPUT,
            "mae_loss": INDEXING_MAE_LOSS,
        },
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three more alternatives, three more mistakes."""
    return graded(
        tmp_path_factory,
        {
            "patchify": UNFOLD_PATCHIFY,
            "random_masking": DESCENDING_MASKING,
            "encode_visible": ENCODE_IN_PATCH_ORDER,
            "unpatchify": CHANNEL_FIRST_UNPATCHIFY,
            "decoder_input": NO_POSITIONS_DECODER_INPUT,
            "mae_loss": PIXELS_ONLY_MAE_LOSS,
        },
    )


@pytest.fixture(scope="module")
def named_mistakes(tmp_path_factory):
    return graded(
        tmp_path_factory,
        {
            "patchify": CHANNEL_FIRST_PATCHIFY,
            "unpatchify": TRANSPOSED_UNPATCHIFY,
            "random_masking": SHUFFLED_MASK_MASKING,
            "encode_visible": LATE_POSITIONS_ENCODE,
            "decoder_input": NO_UNSHUFFLE_DECODER_INPUT,
            "mae_loss": ALL_PATCHES_MAE_LOSS,
        },
    )


@pytest.fixture(scope="module")
def cheats(tmp_path_factory):
    return graded(tmp_path_factory, CHEATS)


def message(report, test_id: str) -> str:
    return next(cell.message for cell in report.cells if cell.cell_id == test_id)


def assert_full_marks(report, *test_ids):
    earned, possible = points(report), full_marks(report)
    for test_id in test_ids:
        assert earned[test_id] == possible[test_id] > 0, f"{test_id}: {message(report, test_id)}"


def assert_zero(report, test_id, misconception):
    assert points(report)[test_id] == 0, report.table()
    assert misconception in message(report, test_id), message(report, test_id)


@pytest.mark.notebook
def test_einsum_and_unfold_patchify_earn_full_marks(alternatives, mixed):
    assert_full_marks(alternatives, "test_patchify")
    assert_full_marks(mixed, "test_patchify")


@pytest.mark.notebook
def test_einsum_unpatchify_earns_full_marks(alternatives):
    assert_full_marks(alternatives, "test_unpatchify")


@pytest.mark.notebook
def test_randperm_masking_earns_full_marks(alternatives):
    assert_full_marks(alternatives, "test_random_masking")


@pytest.mark.notebook
def test_descending_argsort_masking_earns_full_marks(mixed):
    assert_full_marks(mixed, "test_random_masking")


@pytest.mark.notebook
def test_encode_visible_with_its_own_draw_order_earns_full_marks(alternatives, mixed):
    assert_full_marks(alternatives, "test_encode_visible")  # through the student's randperm random_masking
    assert_full_marks(mixed, "test_encode_visible")  # visible patches kept in patch order


@pytest.mark.notebook
def test_scatter_decoder_input_and_indexed_loss_earn_full_marks(alternatives):
    assert_full_marks(alternatives, "test_decoder_input", "test_mae_loss")


@pytest.mark.notebook
def test_the_mistakes_the_checks_name_earn_zero(named_mistakes):
    assert_zero(named_mistakes, "test_patchify", "(c, p, q) order")
    assert_zero(named_mistakes, "test_unpatchify", "unpatchify order transposed")
    assert_zero(named_mistakes, "test_random_masking", "forgot to unshuffle the mask")
    assert_zero(named_mistakes, "test_encode_visible", "position embeddings added after masking")
    assert_zero(named_mistakes, "test_decoder_input", "forgot to unshuffle")
    assert_zero(named_mistakes, "test_mae_loss", "loss includes visible patches")


@pytest.mark.notebook
def test_a_wrong_inverse_forgotten_decoder_positions_and_ignored_norm_pix_loss_earn_zero(mixed):
    assert_zero(mixed, "test_unpatchify", "unpatchify(patchify(imgs)) is not imgs")
    assert_zero(mixed, "test_decoder_input", "forgot the decoder position embeddings")
    assert_zero(mixed, "test_mae_loss", "norm_pix_loss ignored")


@pytest.mark.notebook
def test_calling_the_exercises_reference_earns_zero(cheats):
    for test_id in points(cheats):
        assert_zero(cheats, test_id, "reference implementation")


# Without the grader: the lab's test cells, run on plain functions as in the solution notebook.


def run_test_cell(test_id: str, **functions) -> None:
    """Run the solution notebook's test cell ``test_id`` (visible and hidden checks) with ``functions`` as answers."""
    path = next((SOLUTIONS / LAB).glob("*.ipynb"))
    lab = read_lab(read_notebook(path), LAB, path.stem)
    namespace = {"__name__": "__test_cell__"}
    exec(lab.imports, namespace)
    namespace.update(functions)
    exec(next(e.test_source for e in lab.exercises if e.test_id == test_id), namespace)


def define(source: str):
    """The function that ``source`` defines."""
    namespace = {"torch": torch, "vision": vision}
    exec(source, namespace)
    return namespace[source.split("def ", 1)[1].split("(", 1)[0]]


def test_square_only_patchify_fails_the_hidden_non_square_image():
    patchify = define(SQUARE_ONLY_PATCHIFY)
    check_patchify(patchify)
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        run_test_cell("test_patchify", patchify=patchify)


def test_one_mask_for_the_whole_batch_passes_the_visible_check_but_not_the_distribution_test():
    random_masking = define(ONE_PERMUTATION_MASKING)
    check_random_masking(random_masking)
    with pytest.raises(AssertionError, match="removed too often or too rarely"):
        run_test_cell("test_random_masking", random_masking=random_masking)


def test_a_random_block_of_patches_fails_the_uniformity_test():
    """Removing a cyclic run from a random start removes each position with the right probability,
    but draws only L of the C(L, L_keep) sets."""
    random_masking = define(BLOCK_MASKING)
    check_random_masking(random_masking)
    with pytest.raises(AssertionError, match="not a uniformly random set"):
        run_test_cell("test_random_masking", random_masking=random_masking)


def test_masking_that_ignores_the_generator_is_caught():
    with pytest.raises(Misconception, match="seeded alike gave different results"):
        check_random_masking(define(GLOBAL_RNG_MASKING))


def test_forgotten_cls_token_is_caught():
    with pytest.raises(Misconception, match="forgot the cls token"):
        run_test_cell("test_encode_visible", encode_visible=define(NO_CLS_ENCODE))
