"""The shared encoder: attention matches its definition, padding is invisible, layouts differ as documented."""

import math
import subprocess
import sys

import pytest
import torch

from course_utils.models import BertConfig, BertForMaskedLM
from course_utils.models.transformer import MultiHeadSelfAttention, TransformerBlock, TransformerEncoder


def reference_attention(attention: MultiHeadSelfAttention, x, keep):
    """Attention written out by hand: softmax(QK^T / sqrt(d) with padded keys at -inf) V."""
    B, L, D = x.shape
    H = attention.num_heads
    q, k, v = attention.qkv(x).split(D, dim=-1)
    q, k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    scores = scores.masked_fill(~keep.bool()[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v
    return attention.proj(out.transpose(1, 2).reshape(B, L, D))


def test_attention_matches_its_written_out_definition():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(dim=32, num_heads=4).eval()
    x = torch.randn(3, 7, 32)
    keep = torch.ones(3, 7, dtype=torch.long)
    keep[1, 5:] = 0
    torch.testing.assert_close(attention(x, keep), reference_attention(attention, x, keep), atol=1e-5, rtol=1e-5)


def test_attention_probs_rows_sum_to_one_and_ignore_padding():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(dim=16, num_heads=2).eval()
    keep = torch.tensor([[1, 1, 1, 0, 0]])
    probs = attention.attention_probs(torch.randn(1, 5, 16), keep)
    assert probs.shape == (1, 2, 5, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 5))
    assert probs[..., 3:].abs().max() == 0


@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_content_cannot_change_real_token_outputs(norm_first):
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=32, depth=2, num_heads=4, norm_first=norm_first).eval()
    x = torch.randn(2, 6, 32)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    other = x.clone()
    other[0, 4:] = torch.randn(2, 32) * 10
    torch.testing.assert_close(encoder(x, keep)[0, :4], encoder(other, keep)[0, :4], atol=1e-5, rtol=1e-5)


def test_post_ln_block_ends_normalised_and_pre_ln_block_does_not():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 16) * 3 + 1
    post = TransformerBlock(16, 2, norm_first=False).eval()(x)
    pre = TransformerBlock(16, 2, norm_first=True).eval()(x)
    torch.testing.assert_close(post.mean(-1), torch.zeros(4, 5), atol=1e-5, rtol=0)
    assert pre.mean(-1).abs().max() > 0.1


@pytest.mark.parametrize("norm_first", [True, False])
def test_attention_maps_are_the_weights_each_layer_applies_in_the_forward_pass(norm_first):
    """Layer l's map times that layer's values, projected, is the attention output ``forward`` computed."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=3, num_heads=2, norm_first=norm_first).eval()
    x, keep = torch.randn(2, 5, 16), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    seen = []  # (input, output) of each layer's attention during one forward pass
    hooks = [
        block.attention.register_forward_hook(lambda module, args, out: seen.append((args[0], out)))
        for block in encoder.blocks
    ]
    encoder(x, keep)
    for hook in hooks:
        hook.remove()
    maps = encoder.attention_maps(x, keep)
    assert len(maps) == len(seen) == 3
    for weights, block, (attention_input, attention_output) in zip(maps, encoder.blocks, seen):
        attention = block.attention
        values = attention.qkv(attention_input)[..., 32:].view(2, 5, 2, 8).transpose(1, 2)  # [B, H, L, D/H]
        rebuilt = attention.proj((weights @ values).transpose(1, 2).flatten(2))
        torch.testing.assert_close(rebuilt, attention_output, atol=1e-5, rtol=1e-5)


@pytest.fixture
def sdpa_masks(monkeypatch):
    """The ``attn_mask`` of every call to ``F.scaled_dot_product_attention``, which still runs."""
    masks, sdpa = [], torch.nn.functional.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return masks


def test_a_batch_without_padding_passes_no_mask_so_sdpa_may_use_flash_attention(sdpa_masks):
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=2, num_heads=2, norm_first=False).eval()
    x = torch.randn(2, 5, 16)
    unpadded = encoder(x, torch.ones(2, 5, dtype=torch.long))
    encoder(x)
    assert sdpa_masks == [None] * 4
    padded_x = torch.cat([x, torch.randn(2, 3, 16)], dim=1)
    padded = encoder(padded_x, torch.tensor([[1] * 5 + [0] * 3] * 2))
    assert all(mask is not None for mask in sdpa_masks[4:]) and len(sdpa_masks) == 6
    torch.testing.assert_close(unpadded, padded[:, :5], atol=1e-5, rtol=1e-5)


def test_bert_mlm_loss_without_padding_passes_no_mask(sdpa_masks):
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_heads=2, intermediate_size=32)).eval()
    input_ids = torch.randint(5, 50, (2, 6))
    labels = torch.where(torch.rand(2, 6) < 0.5, input_ids, -100)
    model.mlm_loss(input_ids, labels, torch.ones(2, 6, dtype=torch.long))
    assert sdpa_masks == [None] * 2


def test_bert_feed_forward_width_is_exactly_the_intermediate_size():
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=22, num_heads=2, intermediate_size=98))
    assert [block.ffn[0].out_features for block in model.encoder.blocks] == [98, 98]  # int(22 * (98 / 22)) is 97


def test_importing_bert_loads_neither_the_vision_nor_the_ehr_dependencies():
    code = (
        "import sys; from course_utils.models import BertConfig, BertForMaskedLM; "
        "print([name for name in ('torchvision', 'meds', 'pyarrow') if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_model_is_still_importable_from_the_package():
    import course_utils.models as models
    from course_utils.models import BehrtConfig, MaskedAutoencoder, behrt, mae

    assert BehrtConfig is behrt.BehrtConfig and MaskedAutoencoder is mae.MaskedAutoencoder
    assert models.TransformerEncoder is TransformerEncoder and set(models.__all__) <= set(dir(models))
    assert all(getattr(models, name).__name__ == name for name in models.__all__)  # every lazy entry resolves
    with pytest.raises(AttributeError, match="NoSuchModel"):
        getattr(models, "NoSuchModel")


def test_bad_shapes_are_rejected_with_names():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSelfAttention(dim=10, num_heads=3)
    with pytest.raises(ValueError, match="attention_mask"):
        MultiHeadSelfAttention(dim=8, num_heads=2)(torch.randn(1, 3, 8), torch.ones(1, 1, 3))
