"""The course's models, all built on the shared encoder in ``transformer.py``.

* ``transformer`` -- attention, blocks and the encoder stack (post-LN for BERT, pre-LN for ViT);
* ``bert``        -- ``BertConfig``, the ``BertBackbone`` under every BERT-shaped model, ``BertForMaskedLM`` (Lab 2);
* ``mae``         -- ``MAEConfig`` and ``MaskedAutoencoder`` (Lab 3);
* ``behrt``       -- the BEHRT-style EHR models, masked-event and contrastive (Labs 4 and 6);
* ``electra``, ``causal_lm``, ``albert``, ``permutation_lm`` -- Lab 5's pretraining objectives;
* ``vit``, ``simmim``, ``simclr`` -- ``ViTEncoder`` (MAE's encoder on its own), and SimMIM and SimCLR on it (Lab 6);
* ``flops``       -- the training FLOPs per step of every model, analytic, and ``counted_flops``, the one counter.

The models import nothing from the data, experiment, grading, check or plotting packages.

``from course_utils.models import BertForMaskedLM`` imports only the modules that class needs:
Lab 2 does not pay for torchvision (MAE) or meds and pyarrow (BEHRT).
"""

import importlib

_MODULE_OF = {
    "MultiHeadSelfAttention": "transformer",
    "TransformerBlock": "transformer",
    "TransformerEncoder": "transformer",
    "BertConfig": "bert",
    "BertBackbone": "bert",
    "BertForMaskedLM": "bert",
    "MAEConfig": "mae",
    "MaskedAutoencoder": "mae",
    "Behrt": "behrt",
    "BehrtConfig": "behrt",
    "BehrtEmbedding": "behrt",
    "BehrtForMaskedEvents": "behrt",
    "BehrtForOutcome": "behrt",
    "BehrtContrastive": "behrt",
    "ElectraForPretraining": "electra",
    "CausalLM": "causal_lm",
    "AlbertConfig": "albert",
    "AlbertForMaskedLM": "albert",
    "PermutationLM": "permutation_lm",
    "ViTEncoder": "vit",
    "SimMIM": "simmim",
    "ProjectionHead": "simclr",
    "SimCLR": "simclr",
}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    """Import a model's module the first time one of its names is asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
