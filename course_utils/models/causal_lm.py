"""A left-to-right language model (GPT's objective) on the course's BERT encoder (Lab 5).

    model = CausalLM(BertConfig(vocab_size=V))
    loss = model.next_token_loss(input_ids, attention_mask)      # predict token t+1 from tokens <= t
    scores = sequence_log_likelihood(model, input_ids, attention_mask)  # [B]: log p(sentence)

The only change from BERT is who sees whom: ``causal_attention_mask`` lets position ``i``
attend to the real tokens ``j <= i``, and every position predicts the next token. The
embeddings, the post-LN blocks and the tied head are BERT's, so the comparison with the
other objectives is between objectives, not architectures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.models.bert import BertBackbone, BertConfig, MaskedLMHead
from course_utils.models.transformer import init_and_tie, select_rows


def _check_keep_mask(attention_mask, name: str = "attention_mask") -> None:
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
        raise ValueError(f"{name} must be a [batch, seq] tensor with 1 for real tokens and 0 for padding, got {shape}")


def causal_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` keep-mask (1 = real token) -> boolean ``[B, L, L]``: query ``i`` may attend to key ``j``.

    A real query ``i`` sees the real keys ``j <= i``: never a later token, never padding. A padded
    query sees only itself, so no row is all False (SDPA would return NaN for it); nobody reads
    its output.
    """
    _check_keep_mask(attention_mask)
    length = attention_mask.shape[1]
    real = attention_mask.bool()
    lower = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()  # [L, L]: j <= i
    diagonal = torch.eye(length, dtype=torch.bool, device=attention_mask.device)
    return (lower & real[:, :, None] & real[:, None, :]) | diagonal  # [B, L, L]: real query, real key, j <= i


def next_token_targets(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the next token is predicted: ``(predicting [B, L] bool, targets [S])``.

    Position ``t`` predicts ``input_ids[:, t + 1]`` when that token is real; the last position
    and the positions before padding predict nothing. ``targets`` lists the next tokens in the
    row-major order of ``predicting``.
    """
    real = attention_mask.bool()
    predicting = torch.zeros_like(real)
    predicting[:, :-1] = real[:, 1:]
    targets = input_ids[:, 1:][real[:, 1:]]
    return predicting, targets


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token ``t + 1`` from the logits at position ``t``.

    logits ``[B, L, V]`` (position ``t`` has seen tokens ``<= t``); input_ids, attention_mask
    ``[B, L]``. ``attention_mask`` alone says which tokens are padding: token id 0 is an ordinary
    token. Padding targets are ignored; with no real target the loss is 0. One row works as any batch.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ValueError(f"logits must be [batch, seq, vocab], got {getattr(logits, 'shape', type(logits))}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"input_ids must be [batch, seq] = {tuple(logits.shape[:2])}, got {getattr(input_ids, 'shape', None)}"
        )
    _check_keep_mask(attention_mask)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
        )
    predicting, targets = next_token_targets(input_ids, attention_mask)
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits[predicting].float(), targets)


class CausalLM(BertBackbone):
    """BERT's embeddings, post-LN encoder and tied head, run under a causal mask: ``[B, L] -> [B, L, V]``."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.head = MaskedLMHead(config)
        init_and_tie(self, config.initializer_range, self.head.decoder, self.embeddings.token)  # tied, as in GPT

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Left-to-right token vectors ``[B, L, D]``: position ``t`` has seen only tokens ``<= t``."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got {getattr(input_ids, 'shape', type(input_ids))}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.encoder(self.embeddings(input_ids, token_type_ids), causal_attention_mask(attention_mask))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Next-token logits at every position: ``[B, L]`` -> ``[B, L, V]``."""
        return self.head(self.encode(input_ids, attention_mask, token_type_ids))

    def next_token_loss(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """``next_token_loss(self(input_ids), ...)``, with the vocabulary head run only where a real token follows."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encode(input_ids, attention_mask, token_type_ids)  # [B, L, D]
        predicting, targets = next_token_targets(input_ids, attention_mask)
        logits = self.head(select_rows(hidden, predicting))  # [S, V]
        if targets.numel() == 0:
            return logits.sum()
        return F.cross_entropy(logits.float(), targets)


@torch.no_grad()
def sequence_log_likelihood(model: CausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the sum of ``log p(x_t | x_<t)`` over the real tokens after the first.

    This is how a left-to-right model answers a fill-in-the-blank probe: it cannot fill a blank in
    the middle directly, because the words after the blank are not visible when it predicts the
    blank. Instead each candidate filler is written into the sentence and the whole sentence is
    scored; the candidate with the highest likelihood wins. The words after the blank then count
    only through the likelihood of those words, which is a handicap against a bidirectional model.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, seq], got {getattr(input_ids, 'shape', type(input_ids))}")
    _check_keep_mask(attention_mask)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}"
        )
    log_probs = model(input_ids, attention_mask).float().log_softmax(-1)[:, :-1]  # [B, L-1, V]: predicts t+1
    next_log_probs = log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, L-1]
    return (next_log_probs * attention_mask[:, 1:].to(next_log_probs.dtype)).sum(1)
