"""BERT for masked language modelling (Lab 2), on the course's shared post-LN encoder.

    model = BertForMaskedLM(BertConfig(vocab_size=tokenizer.get_vocab_size()))
    logits = model(input_ids, attention_mask)            # [B, L, V]: every position (fill-mask, parity)
    loss = model.mlm_loss(masked_ids, labels, attention_mask)  # the vocabulary head only where labels != -100

The layout follows Devlin et al. (2019) and Hugging Face ``BertForMaskedLM`` weight for
weight (a test copies the weights across and compares logits):

* embeddings: token + position + segment, summed, then LayerNorm and dropout;
* ``num_layers`` post-LN encoder blocks with fused-QKV SDPA attention and a padding mask
  (none when the batch has no padding);
* MLM head: dense, GELU, LayerNorm, then a decoder whose weight *is* the token embedding
  (tied) with its own bias.

``BertBackbone`` (the embeddings, the encoder and ``encode``) is the body that Lab 5's models
share: ``BertForMaskedLM`` (and through it ALBERT and ELECTRA's generator), ``CausalLM``,
``PermutationLM`` and ELECTRA's discriminator each add their head to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.masking import IGNORE_INDEX
from course_utils.models.transformer import init_and_tie, mask_if_padded, post_ln_encoder, require_positive_ints


@dataclass
class BertConfig:
    """Sizes of a BERT; the defaults are a small model that trains on a laptop CPU in minutes."""

    vocab_size: int
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 64
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02

    def __post_init__(self):
        require_positive_ints(
            self,
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}")

    def to_huggingface(self, **overrides):
        """The same architecture as a Hugging Face ``transformers.BertConfig`` (built locally, no hub).

        ``overrides`` set any other ``transformers.BertConfig`` field. Needs ``transformers``, the
        oracle that tests and benchmarks compare against (``pip install -e '.[test]'``).
        """
        import transformers

        fields = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            hidden_act="gelu",
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )
        return transformers.BertConfig(**(fields | overrides))


class BertEmbeddings(nn.Module):
    """``token + position + segment`` embeddings, then LayerNorm and dropout: ``[B, L] -> [B, L, D]``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(
                f"input_ids has {length} positions, more than max_position_embeddings={self.position.num_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)  # [L], broadcast over the batch
        summed = self.token(input_ids) + self.position(positions) + self.segment(token_type_ids)
        return self.dropout(self.norm(summed))


class MaskedLMHead(nn.Module):
    """Dense, GELU, LayerNorm, then the vocabulary projection: ``[..., D] -> [..., V]``.

    ``decoder.weight`` is replaced by the token-embedding matrix in ``BertForMaskedLM`` (tied);
    ``decoder.bias`` stays the head's own.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden))))


class BertBackbone(nn.Module):
    """BERT's embeddings and post-LN encoder: the body under every BERT-shaped model of Labs 2 and 5.

    A subclass adds its head, then initialises every module and ties its decoder to the token
    embedding with ``init_and_tie``.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = post_ln_encoder(config)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Contextual token vectors: ``input_ids [B, L]`` -> ``[B, L, D]``, every position seeing every real one."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got {getattr(input_ids, 'shape', type(input_ids))}")
        return self.encoder(self.embeddings(input_ids, token_type_ids), attention_mask)


class BertForMaskedLM(BertBackbone):
    """BERT encoder plus tied MLM head; see the module docstring for the two ways to call it."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.head = MaskedLMHead(config)
        init_and_tie(self, config.initializer_range, self.head.decoder, self.embeddings.token)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Logits over the vocabulary at every position: ``[B, L]`` -> ``[B, L, V]``."""
        return self.head(self.encode(input_ids, attention_mask, token_type_ids))

    def mlm_loss(self, input_ids, labels, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Mean cross-entropy over the positions where ``labels != -100``, computed only there.

        The vocabulary head, and the last layer's projection, feed-forward and norms, run at
        the ~15% selected positions instead of all of them: the same loss as the full logits,
        less work. With no selected position the loss is 0.
        """
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must have input_ids' shape {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        selected = labels != IGNORE_INDEX  # [B, L]
        attention_mask = mask_if_padded(attention_mask)
        hidden = self.embeddings(input_ids, token_type_ids)  # [B, L, D]
        *first_blocks, last_block = self.encoder.blocks
        for block in first_blocks:
            hidden = block(hidden, attention_mask)
        hidden = self.encoder.norm(last_block(hidden, attention_mask, rows=selected))  # [S, D]: nobody reads the rest
        logits = self.head(hidden)  # [S, V], S = number of selected positions
        if logits.shape[0] == 0:
            return logits.sum()
        return F.cross_entropy(logits.float(), labels[selected])

    @torch.no_grad()
    def attention_maps(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        """Attention weights of every layer: a list of ``num_layers`` tensors ``[B, H, L, L]``."""
        return self.encoder.attention_maps(self.embeddings(input_ids, token_type_ids), attention_mask)
