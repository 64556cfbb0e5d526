"""The course's models, all built on the shared encoder in ``transformer.py``.

* ``transformer`` -- attention, blocks and the encoder stack (post-LN for BERT, pre-LN for ViT);
* ``bert``        -- ``BertConfig`` and ``BertForMaskedLM`` (Lab 2);
* ``mae``         -- ``MAEConfig`` and ``MaskedAutoencoder`` (Lab 3);
* ``behrt``       -- the BEHRT-style EHR model (Lab 4).
"""

from course_utils.models.transformer import MultiHeadSelfAttention, TransformerBlock, TransformerEncoder
from course_utils.models.mae import MAEConfig, MaskedAutoencoder
from course_utils.models.behrt import Behrt, BehrtConfig, BehrtEmbedding, BehrtForMaskedEvents, BehrtForOutcome
from course_utils.models.bert import BertConfig, BertForMaskedLM

__all__ = [
    "MultiHeadSelfAttention",
    "TransformerBlock",
    "TransformerEncoder",
    "BertConfig",
    "BertForMaskedLM",
    "MAEConfig",
    "MaskedAutoencoder",
    "Behrt",
    "BehrtConfig",
    "BehrtEmbedding",
    "BehrtForMaskedEvents",
    "BehrtForOutcome",
]
