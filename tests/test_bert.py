"""BERT (course_utils.models.bert): parity with Hugging Face, the tied head, padding and the fast loss path."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from course_utils.masking import mask_tokens
from course_utils.models import BertConfig, BertForMaskedLM

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=16)


def perturbed_model(seed: int = 0) -> BertForMaskedLM:
    """A small model whose LayerNorms and biases are non-trivial, so a missing piece shows in the logits."""
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**SMALL)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def to_huggingface(model: BertForMaskedLM) -> "transformers.BertForMaskedLM":
    """The same network as a Hugging Face BertForMaskedLM, config built locally (no hub)."""
    c = model.config
    hf_config = c.to_huggingface(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    state = {
        "bert.embeddings.word_embeddings.weight": model.embeddings.token.weight,
        "bert.embeddings.position_embeddings.weight": model.embeddings.position.weight,
        "bert.embeddings.token_type_embeddings.weight": model.embeddings.segment.weight,
        "bert.embeddings.LayerNorm.weight": model.embeddings.norm.weight,
        "bert.embeddings.LayerNorm.bias": model.embeddings.norm.bias,
        "cls.predictions.transform.dense.weight": model.head.dense.weight,
        "cls.predictions.transform.dense.bias": model.head.dense.bias,
        "cls.predictions.transform.LayerNorm.weight": model.head.norm.weight,
        "cls.predictions.transform.LayerNorm.bias": model.head.norm.bias,
        "cls.predictions.decoder.weight": model.head.decoder.weight,
        "cls.predictions.decoder.bias": model.head.decoder.bias,
        "cls.predictions.bias": model.head.decoder.bias,
    }
    for i, block in enumerate(model.encoder.blocks):
        prefix = f"bert.encoder.layer.{i}."
        weights, biases = block.attention.qkv.weight.chunk(3), block.attention.qkv.bias.chunk(3)
        for name, weight, bias in zip(("query", "key", "value"), weights, biases):
            state[prefix + f"attention.self.{name}.weight"] = weight
            state[prefix + f"attention.self.{name}.bias"] = bias
        pairs = (
            ("attention.output.dense", block.attention.proj),
            ("attention.output.LayerNorm", block.norm1),
            ("intermediate.dense", block.ffn[0]),
            ("output.dense", block.ffn[2]),
            ("output.LayerNorm", block.norm2),
        )
        for name, module in pairs:
            state[prefix + name + ".weight"] = module.weight
            state[prefix + name + ".bias"] = module.bias
    hf = transformers.BertForMaskedLM(hf_config).eval()
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return hf


def padded_batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, SMALL["vocab_size"], (3, 12), generator=generator)
    attention_mask = torch.ones(3, 12, dtype=torch.long)
    attention_mask[1, 8:] = 0
    attention_mask[2, 4:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = (torch.arange(12) >= 6).long().expand(3, 12).clone()
    return input_ids, attention_mask, token_type_ids


def test_logits_match_huggingface_bert_with_padding_and_segments():
    model = perturbed_model()
    hf = to_huggingface(model)
    input_ids, attention_mask, token_type_ids = padded_batch()
    with torch.no_grad():
        ours = model(input_ids, attention_mask, token_type_ids)
        theirs = hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
    real = attention_mask.bool()
    assert ours.shape == (3, 12, SMALL["vocab_size"])
    assert (ours - theirs)[real].abs().max() < 1e-5


def test_logits_match_huggingface_bert_without_mask_arguments():
    model = perturbed_model(seed=2)
    hf = to_huggingface(model)
    input_ids = torch.randint(5, SMALL["vocab_size"], (2, 16))
    with torch.no_grad():
        assert (model(input_ids) - hf(input_ids=input_ids).logits).abs().max() < 1e-5


def test_padding_does_not_change_the_real_positions():
    model = perturbed_model()
    input_ids, attention_mask, _ = padded_batch()
    with torch.no_grad():
        padded = model(input_ids[2:], attention_mask[2:])[0, :4]
        trimmed = model(input_ids[2:, :4])[0]
    assert torch.allclose(padded, trimmed, atol=1e-5)


def test_decoder_weight_is_the_token_embedding():
    model = BertForMaskedLM(BertConfig(**SMALL))
    assert model.head.decoder.weight is model.embeddings.token.weight
    assert model.head.decoder.bias.shape == (SMALL["vocab_size"],)
    names = [name for name, _ in model.named_parameters()]
    assert "head.decoder.weight" not in names  # counted once, as the embedding


def test_mlm_loss_equals_cross_entropy_of_full_logits_at_selected_positions():
    model = perturbed_model()
    input_ids, attention_mask, token_type_ids = padded_batch()
    generator = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens(
        input_ids,
        mask_token_id=4,
        vocab_size=SMALL["vocab_size"],
        special_token_ids=(0, 1, 2, 3, 4),
        mlm_probability=0.4,
        generator=generator,
    )
    assert (labels != -100).any()
    with torch.no_grad():
        fast = model.mlm_loss(masked, labels, attention_mask, token_type_ids)
        logits = model(masked, attention_mask, token_type_ids)
        full = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(fast, full, atol=1e-5)


def test_mlm_loss_is_zero_and_differentiable_when_nothing_is_selected():
    model = BertForMaskedLM(BertConfig(**SMALL))
    input_ids = torch.randint(5, SMALL["vocab_size"], (2, 5))
    loss = model.mlm_loss(input_ids, torch.full_like(input_ids, -100))
    loss.backward()
    assert loss.item() == 0.0


def test_segment_embeddings_change_the_output():
    model = perturbed_model()
    input_ids = torch.randint(5, SMALL["vocab_size"], (1, 8))
    with torch.no_grad():
        first = model(input_ids, token_type_ids=torch.zeros_like(input_ids))
        second = model(input_ids, token_type_ids=torch.ones_like(input_ids))
    assert not torch.allclose(first, second)


def test_attention_maps_ignore_padded_keys():
    model = perturbed_model()
    input_ids, attention_mask, _ = padded_batch()
    maps = model.attention_maps(input_ids, attention_mask)
    assert len(maps) == SMALL["num_layers"]
    assert maps[0].shape == (3, SMALL["num_heads"], 12, 12)
    assert torch.all(maps[1][2, :, :, 4:] == 0)
    assert torch.allclose(maps[1].sum(-1), torch.ones(3, SMALL["num_heads"], 12), atol=1e-5)


@pytest.mark.parametrize(
    "field, value",
    [("hidden_size", 30), ("num_layers", 0), ("vocab_size", -1), ("dropout", 1.0), ("pad_token_id", 99)],
)
def test_bad_config_raises_value_error_naming_the_field(field, value):
    arguments = dict(SMALL) | {field: value}
    with pytest.raises(ValueError, match=field):
        BertConfig(**arguments)


def test_too_long_input_raises_value_error():
    model = BertForMaskedLM(BertConfig(**SMALL))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 17, dtype=torch.long))


@pytest.mark.parametrize("norm_first", [False, True])
def test_block_rows_equal_the_full_output_at_those_rows(norm_first):
    from course_utils.models.transformer import TransformerBlock

    torch.manual_seed(0)
    block = TransformerBlock(16, 4, norm_first=norm_first).eval()
    x = torch.randn(2, 6, 16)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    rows = torch.tensor([[True, False, False, True, False, True], [False, True, False, False, False, False]])
    with torch.no_grad():
        assert torch.allclose(block(x, attention_mask, rows=rows), block(x, attention_mask)[rows], atol=1e-6)


# ----- the exercise checks: the reference passes, each classic mistake is named -------------------

from course_utils.checks import Misconception  # noqa: E402
from course_utils.checks import bert as checks  # noqa: E402
from course_utils.models.bert import BertEmbeddings  # noqa: E402
from course_utils.models.transformer import MultiHeadSelfAttention  # noqa: E402


def reference_attention(q, k, v, attention_mask=None):
    mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def reference_multi_head(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads, attention_mask=None):
    module = MultiHeadSelfAttention(x.shape[-1], num_heads)
    module.load_state_dict(
        {"qkv.weight": qkv_weight, "qkv.bias": qkv_bias, "proj.weight": proj_weight, "proj.bias": proj_bias}
    )
    return module(x, attention_mask)


def reference_embeddings(input_ids, token_type_ids, token, position, segment, norm, dropout):
    """BertEmbeddings.forward itself, run on the given parts (building a module would consume the dropout seed)."""
    parts = SimpleNamespace(token=token, position=position, segment=segment, norm=norm, dropout=dropout)
    return BertEmbeddings.forward(parts, input_ids, token_type_ids)


def reference_loss(logits, labels):
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def reference_head(hidden, dense, norm, token_embedding_weight, bias):
    return F.linear(norm(F.gelu(dense(hidden))), token_embedding_weight, bias)


def test_every_check_passes_the_reference_implementation():
    checks.check_attention(reference_attention)
    checks.check_multi_head_self_attention(reference_multi_head)
    checks.check_bert_embeddings(reference_embeddings)
    checks.check_masked_lm_loss(reference_loss)
    checks.check_mlm_head(reference_head)


def unscaled(q, k, v, attention_mask=None):
    scores = q @ k.transpose(-2, -1)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(-1) @ v


def zero_filled(q, k, v, attention_mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], 0.0)
    return scores.softmax(-1) @ v


def query_masked(q, k, v, attention_mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask.bool()[:, None, :, None], float("-inf"))
    return scores.softmax(-1).nan_to_num(0.0) @ v


@pytest.mark.parametrize(
    "wrong, named",
    [(unscaled, "1/sqrt"), (zero_filled, "-inf"), (query_masked, "columns")],
)
def test_attention_check_names_the_misconception(wrong, named):
    with pytest.raises(Misconception, match=named.replace("/", ".")):
        checks.check_attention(wrong)


def test_loss_check_names_averaging_over_all_positions():
    def over_all(logits, labels):
        selected = labels != -100
        return F.cross_entropy(logits[selected], labels[selected], reduction="sum") / labels.numel()

    with pytest.raises(Misconception, match="all B.L positions"):
        checks.check_masked_lm_loss(over_all)


def test_head_check_names_a_missing_gelu_and_a_detached_embedding():
    with pytest.raises(Misconception, match="GELU"):
        checks.check_mlm_head(lambda h, dense, norm, weight, bias: F.linear(norm(dense(h)), weight, bias))
    with pytest.raises(Misconception, match="gradient"):
        checks.check_mlm_head(
            lambda h, dense, norm, weight, bias: reference_head(h, dense, norm, weight.detach(), bias)
        )


def test_embeddings_check_names_a_missing_segment_embedding():
    def no_segment(input_ids, token_type_ids, token, position, segment, norm, dropout):
        return dropout(norm(token(input_ids) + position(torch.arange(input_ids.shape[1]))))

    with pytest.raises(Misconception, match="segment"):
        checks.check_bert_embeddings(no_segment)
