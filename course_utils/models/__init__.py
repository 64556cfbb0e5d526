"""The course's models, all built on the shared encoder in ``transformer.py``.

* ``transformer`` -- attention, blocks and the encoder stack (post-LN for BERT, pre-LN for ViT);
* ``bert``        -- ``BertConfig`` and ``BertForMaskedLM`` (Lab 2);
* ``mae``         -- ``MAEConfig`` and ``MaskedAutoencoder`` (Lab 3);
* ``behrt``       -- the BEHRT-style EHR model (Lab 4);
* ``electra``, ``causal_lm``, ``albert``, ``permutation_lm`` -- Lab 5's pretraining objectives,
  and ``flops``, their training FLOPs per step.

``from course_utils.models import BertForMaskedLM`` imports only the modules that class needs:
Lab 2 does not pay for torchvision (MAE) or meds and pyarrow (BEHRT).
"""

import importlib

_MODULE_OF = {
    "MultiHeadSelfAttention": "transformer",
    "TransformerBlock": "transformer",
    "TransformerEncoder": "transformer",
    "BertConfig": "bert",
    "BertForMaskedLM": "bert",
    "MAEConfig": "mae",
    "MaskedAutoencoder": "mae",
    "Behrt": "behrt",
    "BehrtConfig": "behrt",
    "BehrtEmbedding": "behrt",
    "BehrtForMaskedEvents": "behrt",
    "BehrtForOutcome": "behrt",
    "ElectraForPretraining": "electra",
    "CausalLM": "causal_lm",
    "AlbertConfig": "albert",
    "AlbertForMaskedLM": "albert",
    "PermutationLM": "permutation_lm",
}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    """Import a model's module the first time one of its names is asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
