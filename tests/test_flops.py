"""course_utils.models.flops: every model's analytic training FLOPs equal what ``counted_flops`` measures,
attention included.

The formulas count matrix products only, and ``FlopCounterMode`` counts only matrix products
(``mm``, ``addmm``, ``bmm``, SDPA's math backend being two ``bmm``), so the two agree exactly:
the comparisons are ``==``, or ``pytest.approx(rel=1e-12)`` where a formula takes a mean number
of predictions per sequence (a float whose product with the batch size may round in the last bit).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_utils.masking import CLS_ID, IGNORE_INDEX, MASK_ID, PAD_ID, SPECIAL_TOKENS
from course_utils.models.albert import AlbertConfig, AlbertForMaskedLM
from course_utils.models.behrt import (
    Behrt,
    BehrtConfig,
    BehrtContrastive,
    BehrtForMaskedEvents,
    contrastive_event_loss,
    mask_events,
    masked_event_loss,
)
from course_utils.models.bert import BertConfig, BertForMaskedLM
from course_utils.models.causal_lm import CausalLM
from course_utils.models.electra import ElectraForPretraining
from course_utils.models.flops import (
    OBJECTIVES,
    contrastive_event_training_flops,
    counted_flops,
    encoder_forward_flops,
    masked_event_training_flops,
    simclr_training_flops,
    simmim_training_flops,
    training_flops_per_step,
)
from course_utils.models.mae import MAEConfig, MaskedAutoencoder, encoder_flops
from course_utils.models.permutation_lm import PermutationLM, sample_factorization_order
from course_utils.models.simclr import SimCLR
from course_utils.models.simmim import SimMIM

FLOAT_ROUNDING = 1e-12  # relative: a mean per sequence times the batch size, in floating point

V = 40
SMALL = dict(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position_embeddings=12)
VIT = dict(image_size=8, patch_size=2, channels=3, dim=32, depth=2, num_heads=4, decoder_dim=16, decoder_num_heads=2)
PATCHES = 16


def small_config(**overrides) -> BertConfig:
    return BertConfig(**(SMALL | dict(dropout=0.0) | overrides))


def padded_batch(length: int = 8):
    """``(input_ids, attention_mask)`` ``[3, length]``: rows of ``length``, ``length - 2`` and 3 real tokens,
    then [PAD]."""
    input_ids = torch.randint(len(SPECIAL_TOKENS), V, (3, length), generator=torch.Generator().manual_seed(length))
    attention_mask = (torch.arange(length) < torch.tensor([[length], [length - 2], [3]])).long()
    return input_ids.masked_fill(attention_mask == 0, PAD_ID), attention_mask


def ehr_batch(batch_size: int, length: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``collate_ehr``-shaped batch of random events, row 1 padded after half its length."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, (batch_size, length), generator=generator)
    input_ids[:, 0] = CLS_ID
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    attention_mask[1, length // 2 :] = 0
    input_ids[attention_mask == 0] = PAD_ID
    visits = torch.arange(length).expand(batch_size, length) // 3
    return dict(
        input_ids=input_ids,
        ages=torch.randint(0, 100, (batch_size, length), generator=generator),
        visits=visits,
        segments=visits % 2,
        attention_mask=attention_mask,
    )


# --------------------------------------------------------------------------- the counter


def test_counted_flops_count_the_forward_and_the_backward_products_of_a_linear_layer():
    layer, x = torch.nn.Linear(6, 5), torch.randn(4, 6)
    forward = 2 * 4 * 6 * 5
    assert counted_flops(lambda: layer(x), backward=False) == forward
    assert counted_flops(lambda: layer(x).sum()) == 2 * forward  # the weight's gradient; x needs none
    assert counted_flops(lambda: layer(x.requires_grad_()).sum()) == 3 * forward  # and x's gradient


def test_without_backward_the_step_runs_without_autograd():
    layer = torch.nn.Linear(3, 2)
    outputs = []
    counted_flops(lambda: outputs.append(layer(torch.randn(1, 3))), backward=False)
    assert not outputs[0].requires_grad


def test_counting_a_models_step_leaves_no_gradient_behind():
    model = BertForMaskedLM(small_config())
    input_ids, attention_mask = padded_batch()
    counted_flops(lambda: model(input_ids, attention_mask).sum(), model=model)
    assert all(parameter.grad is None for parameter in model.parameters())


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_counted_flops_include_attention_on_every_backend_choice(dropout):
    # Without padding, without dropout and on a CPU, SDPA would run a fused kernel that FlopCounterMode
    # cannot see; counted_flops pins the math backend, whose two products are 4 B H L^2 (D/H) FLOPs.
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    attention = lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=dropout).sum()  # noqa: E731
    forward = 4 * 2 * 3 * 5 * 5 * 4
    assert counted_flops(attention, backward=False) == forward
    assert counted_flops(attention) == 3 * forward


def second_difference(count, length: int) -> int:
    """``count(L) - 2 count(2L) + count(3L)``: zero for a linear function of L, ``2 b L^2`` for ``b L^2``."""
    return count(length) - 2 * count(2 * length) + count(3 * length)


def test_the_quadratic_part_of_a_bert_step_is_exactly_attention():
    # No padding and no dropout: the case where an unpinned counter on a CPU would miss attention.
    config = small_config(max_position_embeddings=48)
    model, B, L = BertForMaskedLM(config), 3, 8

    def count(length):
        input_ids = torch.randint(5, V, (B, length), generator=torch.Generator().manual_seed(length))
        return counted_flops(lambda: model(input_ids).sum(), model=model)

    attention = 3 * config.num_layers * 4 * B * L**2 * config.hidden_size  # training: 3 x 4 B L^2 D per layer
    assert second_difference(count, L) == 2 * attention


def test_the_quadratic_part_of_a_behrt_step_is_exactly_attention():
    config = BehrtConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, max_len=48, dropout=0.0)
    model, B, L = Behrt(config), 4, 6

    def count(length):
        batch = ehr_batch(B, length, config.vocab_size)  # padded: SDPA gets a mask
        return counted_flops(lambda: model(batch).sum(), model=model)

    attention = 3 * config.num_layers * 4 * B * L**2 * config.hidden_size
    assert second_difference(count, L) == 2 * attention


# --------------------------------------------------------------------------- Lab 5's objectives


def objective_step(objective: str, length: int):
    """``(model, config, step, predictions_per_sequence)`` for one training step of ``objective`` on a padded batch."""
    torch.manual_seed(0)
    config = small_config(num_layers=3, hidden_size=32, num_heads=4, intermediate_size=48, max_position_embeddings=16)
    input_ids, attention_mask = padded_batch(length)
    selected = (torch.arange(length) % 3 == 1) & attention_mask.bool()  # [B, L]: every third real token is masked
    masked_ids, labels = input_ids.masked_fill(selected, MASK_ID), input_ids.masked_fill(~selected, IGNORE_INDEX)
    masked_per_sequence = selected.sum().item() / 3
    if objective == "mlm":
        model = BertForMaskedLM(config)
        return model, config, lambda: model.mlm_loss(masked_ids, labels, attention_mask), masked_per_sequence
    if objective == "albert":
        config = AlbertConfig(**(vars(config) | dict(embedding_size=8)))
        model = AlbertForMaskedLM(config)
        return model, config, lambda: model.mlm_loss(masked_ids, labels, attention_mask), masked_per_sequence
    if objective == "electra":
        model = ElectraForPretraining(config)
        return model, config, lambda: model(input_ids, masked_ids, labels, attention_mask).loss, masked_per_sequence
    if objective == "causal":
        model = CausalLM(config)
        predicted = attention_mask[:, 1:].sum().item() / 3
        return model, config, lambda: model.next_token_loss(input_ids, attention_mask), predicted
    model = PermutationLM(config)
    order = sample_factorization_order(attention_mask)
    return model, config, lambda: model.permutation_loss(input_ids, attention_mask, order, 2), 2


@pytest.mark.parametrize("length", [8, 16])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_analytic_training_flops_equal_a_counted_step(objective, length):
    model, config, step, predicted = objective_step(objective, length)
    analytic = training_flops_per_step(objective, config, 3, length, predicted)
    assert analytic == pytest.approx(counted_flops(step, model=model), rel=FLOAT_ROUNDING)


def test_shared_layers_the_generator_and_the_query_stream_all_cost_flops():
    B, L, D, F, V = 8, 12, 64, 256, 500
    sizes = dict(hidden_size=D, num_heads=4, intermediate_size=F, vocab_size=V)
    full_layer = 3 * B * L * (8 * D * D + 4 * D * F + 4 * L * D)  # forward + backward of one layer
    two, four = (AlbertConfig(**(SMALL | sizes | dict(embedding_size=16, num_layers=n))) for n in (2, 4))
    extra = training_flops_per_step("albert", four, B, L, 1.5) - training_flops_per_step("albert", two, B, L, 1.5)
    assert extra == pytest.approx(2 * full_layer), "two more passes through the shared block cost two layers"
    config = small_config(**sizes)
    quarter = training_flops_per_step("electra", config, B, L, 1.5, generator_width_fraction=0.25)
    assert training_flops_per_step("electra", config, B, L, 1.5, generator_width_fraction=0.5) > quarter
    one_more_target = 3 * B * (2 * (4 * D * D + 4 * L * D + 4 * D * F) + 2 * D * D + 2 * D * V)
    more = training_flops_per_step("permutation", config, B, L, 2) - training_flops_per_step(
        "permutation", config, B, L, 1
    )
    assert more == pytest.approx(one_more_target), "each target adds a query-stream row in both layers and the head"


@pytest.mark.parametrize(
    "argument,call",
    [
        ("objective", lambda: training_flops_per_step("bert", small_config(), 2, 4, 1.0)),
        ("predictions_per_sequence", lambda: training_flops_per_step("mlm", small_config(), 2, 4, 5.0)),
        ("batch_size", lambda: training_flops_per_step("causal", small_config(), 0, 4, 1.0)),
        ("seq_len", lambda: masked_event_training_flops(BehrtConfig(vocab_size=30), 2, 0, 1.0)),
        ("projection_dim", lambda: contrastive_event_training_flops(BehrtConfig(vocab_size=30), 2, 4, 0)),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_argument(argument, call):
    with pytest.raises(ValueError, match=argument):
        call()


# --------------------------------------------------------------------------- the ViT encoder: MAE, SimMIM, SimCLR


def test_maes_counted_encoder_flops_equal_the_formula_on_the_kept_patches():
    config = MAEConfig(**VIT)
    torch.manual_seed(0)
    mae = MaskedAutoencoder(config)
    for ratio in (0.0, 0.75):
        counted = encoder_flops(mae, torch.rand(3, 3, 8, 8), ratio)
        assert counted == encoder_forward_flops(config, 3, int(PATCHES * (1 - ratio)))


@pytest.mark.parametrize("image_size", [8, 16])
def test_simmim_training_flops_equal_a_counted_step(image_size):
    torch.manual_seed(0)
    model = SimMIM(MAEConfig(**(VIT | dict(image_size=image_size)))).train()
    imgs = torch.rand(4, 3, image_size, image_size)
    assert counted_flops(lambda: model(imgs, 0.6)[0], model=model) == simmim_training_flops(model.config, 4)


@pytest.mark.parametrize("image_size", [8, 16])
def test_simclr_training_flops_equal_a_counted_step(image_size):
    torch.manual_seed(0)
    config = MAEConfig(**(VIT | dict(image_size=image_size)))
    model = SimCLR(config, hidden_dim=32, out_dim=16).train()
    view1, view2 = torch.rand(4, 3, image_size, image_size), torch.rand(4, 3, image_size, image_size)
    assert counted_flops(lambda: model(view1, view2), model=model) == simclr_training_flops(config, 4, 32, 16)


def test_simclr_costs_about_twice_simmim_per_image():
    """Two full-length views per image against one; both far above MAE's encoder on a quarter of the patches."""
    config = MAEConfig(image_size=32, patch_size=4)
    ratio = simclr_training_flops(config, 64, config.dim, 64) / simmim_training_flops(config, 64)
    assert 1.9 < ratio < 2.2
    assert encoder_forward_flops(config, 64, 16) < encoder_forward_flops(config, 64) / 3


# --------------------------------------------------------------------------- BEHRT


def behrt_config(**overrides) -> BehrtConfig:
    return BehrtConfig(**(dict(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, max_len=32) | overrides))


@pytest.mark.parametrize("length", [8, 16])
def test_masked_event_training_flops_equal_a_counted_step(length):
    config = behrt_config()
    torch.manual_seed(0)
    model, batch = BehrtForMaskedEvents(config).train(), ehr_batch(4, length, config.vocab_size)
    torch.manual_seed(1)  # masked_event_loss masks with the global generator: replay its draw to count the masks
    _, labels = mask_events(batch["input_ids"], config.vocab_size)
    masked_per_sequence = (labels != IGNORE_INDEX).sum().item() / 4
    torch.manual_seed(1)
    counted = counted_flops(lambda: masked_event_loss(model, batch), model=model)
    analytic = masked_event_training_flops(config, 4, length, masked_per_sequence)
    assert masked_per_sequence > 0 and analytic == pytest.approx(counted, rel=FLOAT_ROUNDING)


@pytest.mark.parametrize("length", [8, 16])
def test_contrastive_event_training_flops_equal_a_counted_step(length):
    config = behrt_config()
    torch.manual_seed(0)
    model = BehrtContrastive(config, projection_dim=8).train()
    views = ehr_batch(4, length, config.vocab_size, seed=1), ehr_batch(4, length, config.vocab_size, seed=2)
    counted = counted_flops(lambda: contrastive_event_loss(model, views), model=model)
    assert counted == contrastive_event_training_flops(config, 4, length, projection_dim=8)

