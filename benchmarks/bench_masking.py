"""Masking speed: course_utils.masking.mask_tokens against the course notes' Python loop and Hugging Face.

    python benchmarks/bench_masking.py [--batch 256] [--seq 512] [--repeats 20] [--threads 1]

All maskers see the same batch ([CLS] text [SEP] then padding, BERT's vocabulary size) in one run;
each time is the median over ``--repeats`` rounds, the maskers taking turns within a round. Hugging
Face's ``DataCollatorForLanguageModeling.torch_mask_tokens`` (transformers, a test extra) gets a
tokenizer built in memory (no hub), once with a precomputed ``special_tokens_mask`` and once
without; it masks in place, so it gets a fresh copy of the batch, made outside the timed region.
The notes' loop takes about 0.4 s per batch here, so it runs on the full batch too.
Targets: >= 100x the loop and >= 2x Hugging Face with the precomputed mask.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tokenizers import Tokenizer, models
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

from course_utils.masking import mask_tokens, notes_create_masked_lm_batch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(5)
VOCAB = 30522  # bert-base-uncased


def local_tokenizer() -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over BERT's vocabulary size, built in memory, specials at ids 0-4."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"word{i}": i for i in range(len(SPECIAL_TOKENS), VOCAB)})
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def padded_batch(rows: int, seq: int, seed: int = 0) -> torch.Tensor:
    """``[rows, seq]``: [CLS] words [SEP] and padding, real lengths uniform in [seq/2, seq]."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIAL_TOKENS), VOCAB, (rows, seq), generator=generator)
    lengths = torch.randint(seq // 2, seq + 1, (rows,), generator=generator)
    positions = torch.arange(seq)
    ids[:, 0] = CLS
    ids[positions == (lengths[:, None] - 1)] = SEP
    ids[positions >= lengths[:, None]] = PAD
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = steadiest figures)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ids = padded_batch(args.batch, args.seq)
    special_mask = torch.isin(ids, torch.arange(len(SPECIAL_TOKENS))).long()
    collator = DataCollatorForLanguageModeling(local_tokenizer(), mlm_probability=0.15)

    maskers = {
        "course_utils mask_tokens": lambda batch: mask_tokens(
            batch, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=range(len(SPECIAL_TOKENS))
        ),
        "HF, precomputed special_tokens_mask": lambda batch: collator.torch_mask_tokens(
            batch, special_tokens_mask=special_mask
        ),
        "HF, no special_tokens_mask": lambda batch: collator.torch_mask_tokens(batch),
        "notes' loop": lambda batch: notes_create_masked_lm_batch(batch, MASK, vocab_size=VOCAB),
    }
    seconds = {name: [] for name in maskers}
    for name, masker in maskers.items():  # warm-up
        masker(ids.clone())
    for _ in range(args.repeats):
        for name, masker in maskers.items():
            batch = ids.clone()
            start = time.perf_counter()
            masker(batch)
            seconds[name].append(time.perf_counter() - start)

    median = {name: statistics.median(times) for name, times in seconds.items()}

    print(
        f"masking one {args.batch} x {args.seq} batch, vocabulary {VOCAB}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), median of {args.repeats} rounds"
    )
    for name, value in median.items():
        print(f"  {name:<40} {value * 1e3:10.2f} ms")
    ours = median["course_utils mask_tokens"]
    ratios = {
        "notes' loop": (median["notes' loop"] / ours, 100),
        "HF, precomputed special_tokens_mask": (median["HF, precomputed special_tokens_mask"] / ours, 2),
        "HF, no special_tokens_mask": (median["HF, no special_tokens_mask"] / ours, 2),
    }
    for name, (ratio, target) in ratios.items():
        verdict = "meets" if ratio >= target else "MISSES"
        print(f"mask_tokens is {ratio:7.1f}x faster than {name:<37} ({verdict} the {target}x target)")


if __name__ == "__main__":
    main()
