"""Tensors for the model: a dataset of encoded sequences, padding collation and length-bucketed batches."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from course_utils.ehr.sequences import EHRSequence, Vocabulary, truncate_left
from course_utils.masking import PAD_ID


class EHRDataset(torch.utils.data.Dataset):
    """Encoded, left-truncated sequences (and optional binary labels) as 1-D LongTensors per field."""

    def __init__(
        self,
        sequences: Sequence[EHRSequence],
        vocabulary: Vocabulary,
        max_len: int,
        labels: Sequence[bool] | None = None,
    ):
        if labels is not None and len(labels) != len(sequences):
            raise ValueError(f"labels must match sequences in length, got {len(labels)} and {len(sequences)}")
        self.items = []
        for sequence in sequences:
            sequence = truncate_left(sequence, max_len)
            self.items.append(
                {
                    "input_ids": torch.tensor(vocabulary.encode(sequence.tokens)),
                    "ages": torch.tensor(sequence.ages),
                    "visits": torch.tensor(sequence.visits),
                    "segments": torch.tensor(sequence.segments),
                }
            )
        if labels is not None:
            for item, label in zip(self.items, labels):
                item["label"] = torch.tensor(float(label))
        self.lengths = [len(item["input_ids"]) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def collate_ehr(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of dataset items to the longest: ``input_ids/ages/visits/segments/attention_mask`` ``[B, L]``
    (+ ``label`` ``[B]``)."""
    pad = torch.nn.utils.rnn.pad_sequence
    batch = {
        "input_ids": pad([item["input_ids"] for item in items], batch_first=True, padding_value=PAD_ID),
        "ages": pad([item["ages"] for item in items], batch_first=True),
        "visits": pad([item["visits"] for item in items], batch_first=True),
        "segments": pad([item["segments"] for item in items], batch_first=True),
    }
    batch["attention_mask"] = (batch["input_ids"] != PAD_ID).long()
    if "label" in items[0]:
        batch["label"] = torch.stack([item["label"] for item in items])
    return batch


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar length: shuffle, cut into buckets of ``bucket_batches`` batches, sort each bucket by length.

    Padding then costs little, while batch order stays random. Each pass draws a new shuffle.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, bucket_batches: int = 20, seed: int = 0
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.shuffle, self.bucket_batches = batch_size, shuffle, bucket_batches
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = (
            torch.randperm(len(self.lengths), generator=self.generator)
            if self.shuffle
            else torch.arange(len(self.lengths))
        )
        bucket = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        yield from batches


def padding_fraction(lengths: Sequence[int], batches: Iterable[Sequence[int]]) -> float:
    """The share of ``[PAD]`` positions when each batch is padded to its longest sequence."""
    real = padded = 0
    for batch in batches:
        batch_lengths = [lengths[i] for i in batch]
        real += sum(batch_lengths)
        padded += max(batch_lengths) * len(batch_lengths)
    return 1.0 - real / padded
