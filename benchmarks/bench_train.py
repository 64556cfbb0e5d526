"""The training loop's two fixed costs on a small model: fetching a batch and the optimiser's update.

    python benchmarks/bench_train.py                   # Lab 5's `cpu` MLM: batch 64 of the fact-dense corpus
    python benchmarks/bench_train.py --rounds 7

* **A batch**: ``train.batches`` (one indexing per tensor, ``TensorRows.__getitems__``) against its peer,
  a ``DataLoader`` over ``torch.utils.data.StackDataset`` with the default collate (one indexing per row
  and tensor, then a stack); both draw the same batches from the same seed.
* **The update**: ``train.make_optimizer``'s fused AdamW against the same AdamW unfused (PyTorch's
  default on a CPU), on the MLM's parameters with fixed gradients.
* **A step**: ``loss, backward, clip, update`` of the MLM, for scale.

Rounds alternate the two sides of each pair; each figure is the median over rounds, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_utils.experiments.objective_comparison import build_model, comparison_config, pretraining_loss_fn
from course_utils.text import encode_batch, train_tokenizer
from course_utils.train import TrainConfig, batches, make_optimizer


def endless(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def per_call_ms(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    config = comparison_config("cpu")
    corpus = config.corpus()
    tokenizer = train_tokenizer(corpus.train, vocab_size=config.tokenizer_vocab_size)
    data = encode_batch(tokenizer, corpus.train)
    model = build_model("mlm", config, config.bert_config(tokenizer.get_vocab_size(), data["input_ids"].shape[1]))
    loss_fn = pretraining_loss_fn("mlm", config, tokenizer)

    peer_loader = torch.utils.data.DataLoader(
        torch.utils.data.StackDataset(**data), batch_size=config.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    ours = batches(data, config.batch_size)
    loaders = {"StackDataset + collate": endless(peer_loader), "train.batches": endless(ours)}
    fused = make_optimizer(model, TrainConfig(steps=1))
    unfused = torch.optim.AdamW([{**group, "fused": None} for group in fused.param_groups])
    optimizers = {"AdamW": unfused, "AdamW, fused": fused}
    batch = next(iter(batches(data, config.batch_size)))

    def step():
        loss = loss_fn(model, batch)
        fused.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        fused.step()

    step()
    times = {name: [] for name in [*loaders, *optimizers, "one MLM step"]}
    for _ in range(args.rounds):
        for name, loader in loaders.items():
            times[name].append(per_call_ms(lambda loader=loader: next(loader), args.calls))
        for name, optimizer in optimizers.items():
            times[name].append(per_call_ms(optimizer.step, args.calls))
        times["one MLM step"].append(per_call_ms(step, args.calls // 4))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"Lab 5 `cpu` MLM, batch {config.batch_size} x {data['input_ids'].shape[1]} tokens, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} alternating rounds (ms per call)")
    for name, value in median.items():
        print(f"  {name:24s} {value:7.3f}")
    print(f"  a batch: train.batches is {median['StackDataset + collate'] / median['train.batches']:.1f}x as fast; "
          f"the update: fused is {median['AdamW'] / median['AdamW, fused']:.1f}x as fast")


if __name__ == "__main__":
    main()
