"""BEHRT-style models for patient timelines (Labs 4 and 6), on the course's shared encoder.

    config = BehrtConfig(vocab_size=len(vocabulary))
    pretrain = BehrtForMaskedEvents(config)
    history = fit(pretrain, loader, masked_event_loss, TrainConfig(steps=300))
    classifier = BehrtForOutcome(config, encoder=pretrain.behrt)   # fine-tune the pretrained encoder
    history = fit(classifier, labelled_loader, outcome_loss, TrainConfig(steps=200))
    contrastive = BehrtContrastive(config)                         # Lab 6: NT-Xent on two views of each patient
    history = fit(contrastive, views_loader, contrastive_event_loss, TrainConfig(steps=300))

Following Li et al. (2020), a token's embedding is the sum of four lookups -- its code, the
patient's age in years, its visit index and its alternating segment -- then LayerNorm and dropout.
Unlike the course notes' ``MaskedEHRModel``, attention is masked on ``[PAD]``, and the masking
(``mask_events``) is vectorised, never selects ``[PAD]``, ``[CLS]`` or ``[SEP]`` and never draws a
special token as a random replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.contrastive import nt_xent_loss
from course_utils.masking import IGNORE_INDEX, MASK_ID, PAD_ID, SPECIAL_TOKENS, STRUCTURAL_IDS, mask_tokens
from course_utils.models.simclr import ProjectionHead
from course_utils.models.transformer import init_and_tie, init_weights, post_ln_encoder, require_positive_ints

EHR_SPECIAL_IDS = tuple(range(len(SPECIAL_TOKENS)))  # never selected for masking, never a random replacement


@dataclass
class BehrtConfig:
    """Sizes of a BEHRT; the defaults are those of Lab 4's ``cpu`` profile."""

    vocab_size: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    max_len: int = 128  # tokens per sequence, [CLS] included; also bounds the visit index
    max_age: int = 120  # ages in [0, max_age] years, as course_utils.ehr clamps them (its MAX_AGE)
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        require_positive_ints(self, "vocab_size", "hidden_size", "num_layers", "num_heads", "max_len", "max_age")
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size={self.vocab_size} leaves no room for codes besides the "
                f"{len(SPECIAL_TOKENS)} special tokens"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def intermediate_size(self) -> int:
        """The feed-forward width, ``int(hidden_size * mlp_ratio)``."""
        return int(self.hidden_size * self.mlp_ratio)


class BehrtEmbedding(nn.Module):
    """``code + age + visit + segment`` embeddings, summed, then LayerNorm and dropout: ``[B, L] x 4 -> [B, L, D]``."""

    def __init__(self, config: BehrtConfig):
        super().__init__()
        self.code = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=PAD_ID)
        self.age = nn.Embedding(config.max_age + 1, config.hidden_size)
        self.visit = nn.Embedding(config.max_len, config.hidden_size)
        self.segment = nn.Embedding(2, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids, ages, visits, segments) -> torch.Tensor:
        summed = self.code(input_ids) + self.age(ages) + self.visit(visits) + self.segment(segments)  # [B, L, D]
        return self.dropout(self.norm(summed))


class Behrt(nn.Module):
    """Embedding + post-LN encoder (as BERT): a batch dict -> hidden states ``[B, L, D]``."""

    def __init__(self, config: BehrtConfig):
        super().__init__()
        self.config = config
        self.embedding = BehrtEmbedding(config)
        self.encoder = post_ln_encoder(config)
        init_and_tie(self)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.embedding(batch["input_ids"], batch["ages"], batch["visits"], batch["segments"])
        return self.encoder(x, batch["attention_mask"])


class BehrtForMaskedEvents(nn.Module):
    """BEHRT with a masked-event head (dense, GELU, LayerNorm, decoder tied to the code embedding)."""

    def __init__(self, config: BehrtConfig):
        super().__init__()
        self.behrt = Behrt(config)
        self.transform = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
        )
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        init_weights(self.transform[0])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., V]``: scores over the code vocabulary (structural tokens can never win)."""
        scores = self.transform(hidden) @ self.behrt.embedding.code.weight.T + self.bias
        return scores.index_fill(-1, torch.tensor(STRUCTURAL_IDS + (MASK_ID,), device=scores.device), float("-inf"))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores at every position ``[B, L, V]`` (for probes); training scores only the masked ones."""
        return self.logits(self.behrt(batch))


class BehrtForOutcome(nn.Module):
    """BEHRT with a binary-outcome head on the ``[CLS]`` token: a batch dict -> logits ``[B]``.

    Pass ``encoder`` (a pretrained ``Behrt``) to fine-tune it; without it the encoder starts from scratch.
    """

    def __init__(self, config: BehrtConfig, encoder: Behrt | None = None):
        super().__init__()
        self.behrt = encoder if encoder is not None else Behrt(config)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden_size, 1))
        init_weights(self.head[1])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.behrt(batch)[:, 0]).squeeze(-1)  # [B, L, D] -> [CLS] [B, D] -> [B]


class BehrtContrastive(nn.Module):
    """Lab 4's ``Behrt`` with SimCLR's projection head on ``[CLS]``: ``loss = model(view1, view2)``.

    ``model.behrt`` is the encoder that fine-tuning reads, as ``BehrtForMaskedEvents.behrt``.
    """

    def __init__(self, config: BehrtConfig, projection_dim: int = 64, temperature: float = 0.5):
        super().__init__()
        self.behrt = Behrt(config)
        self.projection_head = ProjectionHead(config.hidden_size, config.hidden_size, projection_dim)
        self.temperature = temperature

    def project(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A batch of ``[B, L]`` tensors -> projections ``[B, projection_dim]`` of the ``[CLS]`` states."""
        return self.projection_head(self.behrt(batch)[:, 0])  # [B, L, D] -> [B, D] -> [B, P]

    def forward(self, view1: dict[str, torch.Tensor], view2: dict[str, torch.Tensor]) -> torch.Tensor:
        """Two batches of ``[B, L]`` tensors (row i: two views of patient i) -> NT-Xent, both in one encoder pass."""
        both = {key: torch.cat([view1[key], view2[key]]) for key in view1}  # [2B, L] per field
        z1, z2 = self.project(both).chunk(2)  # [2B, P] -> 2 x [B, P]
        return nt_xent_loss(z1, z2, self.temperature)


def contrastive_event_loss(model: BehrtContrastive, batch: tuple[dict, dict]) -> torch.Tensor:
    """``fit`` loss: NT-Xent over the two views that ``PatientViewsCollate`` made."""
    return model(*batch)


def mask_events(
    input_ids: torch.Tensor, vocab_size: int, mlm_probability: float = 0.15, generator: torch.Generator | None = None
):
    """BERT's 80-10-10 masking of event tokens ``[B, L]`` -> ``(masked_ids, labels)``.

    Only code tokens are eligible: ``[PAD]``, ``[CLS]``, ``[SEP]`` (and ``[MASK]``, ``[UNK]``) are never
    selected, and a random replacement is always a code, never a special token.
    """
    return mask_tokens(
        input_ids,
        mask_token_id=MASK_ID,
        vocab_size=vocab_size,
        special_token_ids=EHR_SPECIAL_IDS,
        mlm_probability=mlm_probability,
        generator=generator,
    )


def masked_event_loss(model: BehrtForMaskedEvents, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``fit`` loss: mask a fresh 15% of events, cross-entropy on the masked positions only."""
    masked_ids, labels = mask_events(batch["input_ids"], model.behrt.config.vocab_size)
    hidden = model.behrt({**batch, "input_ids": masked_ids})
    selected = labels != IGNORE_INDEX  # [B, L]
    return F.cross_entropy(model.logits(hidden[selected]).float(), labels[selected])


def outcome_head_loss(hidden: torch.Tensor, head: nn.Module, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fine-tuning head and loss: ``hidden`` ``[B, L, D]`` -> ``(loss, logits [B])``.

    Only the ``[CLS]`` state (position 0) feeds ``head`` (``D -> 1``); the loss is binary
    cross-entropy on the logits, computed stably (no separate sigmoid).
    """
    logits = head(hidden[:, 0]).squeeze(-1)  # [B, D] -> [B]
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float()), logits


def outcome_loss(model: BehrtForOutcome, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``fit`` loss for fine-tuning: binary cross-entropy on the [CLS] logit."""
    return outcome_head_loss(model.behrt(batch), model.head, batch["label"])[0]


@torch.no_grad()
def predict_outcome(model: BehrtForOutcome, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, labels)`` over a loader, as NumPy arrays in loader order."""
    model.to(device).eval()
    probabilities, labels = [], []
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items()}
        probabilities.append(torch.sigmoid(model(batch).float()).cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(probabilities).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def masked_event_recall(
    model: BehrtForMaskedEvents, loader, device, ks=(1, 5, 10), seed: int = 0
) -> dict[int, tuple[float, float]]:
    """Recall@k of masked events: mask 15% of each batch (all as [MASK]); is the true code in the top k?

    Returns ``{k: (model_recall, frequency_recall)}``; the second ranks codes by training frequency
    (the vocabulary order), the baseline a model must beat.
    """
    model.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    hits, frequency_hits, total = dict.fromkeys(ks, 0), dict.fromkeys(ks, 0), 0
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items()}
        masked_ids, labels = mask_tokens(
            batch["input_ids"],
            mask_token_id=MASK_ID,
            vocab_size=model.behrt.config.vocab_size,
            special_token_ids=EHR_SPECIAL_IDS,
            mask_replace_prob=1.0,
            random_replace_prob=0.0,
            generator=generator,
        )
        selected = labels != IGNORE_INDEX
        targets = labels[selected]  # [N]
        top = (
            model.logits(model.behrt({**batch, "input_ids": masked_ids})[selected]).topk(max(ks), dim=-1).indices
        )  # [N, k]
        for k in ks:
            hits[k] += int((top[:, :k] == targets[:, None]).any(dim=-1).sum())
            frequency_hits[k] += int((targets < len(SPECIAL_TOKENS) + k).sum())
        total += int(selected.sum())
    return {k: (hits[k] / total, frequency_hits[k] / total) for k in ks}


@torch.no_grad()
def masked_position_probabilities(
    model: BehrtForMaskedEvents, item: dict[str, torch.Tensor], position: int, device
) -> torch.Tensor:
    """Replace one position of one dataset item by [MASK]; return the model's probabilities there ``[V]``."""
    model.to(device).eval()
    batch = {key: value[None].to(device) for key, value in item.items() if key != "label"}
    batch["attention_mask"] = (batch["input_ids"] != PAD_ID).long()
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][0, position] = MASK_ID
    return model(batch)[0, position].float().softmax(-1).cpu()
