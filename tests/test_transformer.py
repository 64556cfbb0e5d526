"""The shared encoder: attention matches its definition, padding is invisible, layouts differ as documented."""

import math

import pytest
import torch

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


def test_attention_maps_match_the_forward_pass_layers():
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=3, num_heads=2).eval()
    maps = encoder.attention_maps(torch.randn(2, 4, 16))
    assert len(maps) == 3 and all(m.shape == (2, 2, 4, 4) for m in maps)


def test_bad_shapes_are_rejected_with_names():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSelfAttention(dim=10, num_heads=3)
    with pytest.raises(ValueError, match="attention_mask"):
        MultiHeadSelfAttention(dim=8, num_heads=2)(torch.randn(1, 3, 8), torch.ones(1, 1, 3))
