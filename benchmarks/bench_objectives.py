"""Training step time and hardware efficiency of Lab 5's five objectives, at the `cpu` comparison config.

    python benchmarks/bench_objectives.py              # CPU, the `cpu` config: each objective's efficiency
    python benchmarks/bench_objectives.py --rounds 9

For each objective: the time of one training step (loss, backward, AdamW) on a batch of the Lab 2
corpus, its analytic training FLOPs (``course_utils.models.flops``), and the achieved FLOP/s
against the machine's matmul FLOP/s, measured in the same run. The rounds alternate (matmul,
then every objective once) so that machine load hits all alike; each figure is the median over
rounds. An objective's *efficiency* is achieved / matmul FLOP/s; the target for each is at least
half of MLM's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_utils.device import seed_everything
from course_utils.experiments.objective_comparison import (
    build_model,
    comparison_config,
    flops_options,
    model_config,
    predictions_per_sequence,
    pretraining_loss_fn,
)
from course_utils.models.flops import OBJECTIVES, training_flops_per_step
from course_utils.text import encode_batch, make_corpus, train_tokenizer

MATMUL_SIZE = 1024


def matmul_flops_per_second(steps: int) -> float:
    """FLOP/s of ``steps`` fp32 ``[n, n] x [n, n]`` products, ``2 n^3`` FLOPs each."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    start = time.perf_counter()
    for _ in range(steps):
        a @ b
    return steps * 2 * MATMUL_SIZE**3 / (time.perf_counter() - start)


def objective_steps(config):
    """Per objective: a zero-argument training step and its analytic FLOPs."""
    corpus = make_corpus(2_000, seed=0, shares=config.shares)  # the comparison's fact-dense mix
    tokenizer = train_tokenizer(corpus.train, vocab_size=config.tokenizer_vocab_size)
    batch = encode_batch(tokenizer, corpus.train[: config.batch_size])
    seq_len = batch["input_ids"].shape[1]
    bert_config = config.bert_config(tokenizer.get_vocab_size(), seq_len)
    steps = {}
    for objective in OBJECTIVES:
        seed_everything(0)
        model = build_model(objective, config, bert_config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        loss_fn = pretraining_loss_fn(objective, config, tokenizer)

        def step(model=model, optimizer=optimizer, loss_fn=loss_fn):
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        predicted = predictions_per_sequence(objective, config, batch["attention_mask"])
        sizes, options = model_config(objective, config, bert_config), flops_options(objective, config)
        flops = training_flops_per_step(objective, sizes, config.batch_size, seq_len, predicted, **options)
        steps[objective] = (step, flops)
    return steps, seq_len


def seconds_per_step(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps per objective per round")
    args = parser.parse_args()

    config = comparison_config("cpu")
    steps, seq_len = objective_steps(config)
    for step, _ in steps.values():  # warm-up: allocator, kernels, optimiser state
        seconds_per_step(step, 3)
    matmul_flops_per_second(3)
    peak, times = [], {objective: [] for objective in OBJECTIVES}
    for _ in range(args.rounds):
        peak.append(matmul_flops_per_second(20))
        for objective, (step, _) in steps.items():
            times[objective].append(seconds_per_step(step, args.steps))
    peak = statistics.median(peak)

    print(
        f"CPU, course cpu config (D={config.hidden_size}, {config.num_layers} layers, "
        f"batch {config.batch_size} x {seq_len}), "
        f"{torch.get_num_threads()} threads; matmul {MATMUL_SIZE}^3 fp32: {peak / 1e9:.1f} GFLOP/s"
    )
    efficiency = {}
    for objective, (_, flops) in steps.items():
        seconds = statistics.median(times[objective])
        achieved = flops / seconds
        efficiency[objective] = achieved / peak
        print(
            f"  {objective:>11}: {seconds * 1e3:6.1f} ms/step, {flops / 1e9:6.3f} GFLOP/step, "
            f"{achieved / 1e9:6.1f} GFLOP/s, efficiency {efficiency[objective]:5.1%}, "
            f"vs MLM {efficiency[objective] / efficiency['mlm']:4.2f}x   (target >= 0.5x)"
        )


if __name__ == "__main__":
    main()
