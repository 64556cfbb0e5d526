"""Training steps per second: course_utils BertForMaskedLM against Hugging Face BertForMaskedLM.

    python benchmarks/bench_bert.py            # CPU, the course's `cpu` lab config; prints the ratio
    python benchmarks/bench_bert.py --gpu      # also BERT-base in bf16 on CUDA: tokens/s and MFU vs H100 peak

Same config, same batch, same masks, same optimiser (AdamW) for both models, measured in
one run with alternating timed rounds so that machine load hits both alike. Ours runs the
vocabulary head only at the selected positions and fuses the QKV projection; Hugging Face
projects every position onto the vocabulary.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from course_utils.masking import mask_tokens
from course_utils.models import BertConfig, BertForMaskedLM

H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, NVIDIA H100 SXM datasheet (dense, no sparsity)

CPU_CONFIG = dict(
    vocab_size=600, hidden_size=256, num_layers=2, num_heads=4, intermediate_size=1024, max_position_embeddings=64
)
BASE_CONFIG = dict(
    vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_position_embeddings=512
)


def huggingface_twin(config: BertConfig) -> transformers.BertForMaskedLM:
    return transformers.BertForMaskedLM(config.to_huggingface(attn_implementation="sdpa"))


def make_batch(config: BertConfig, batch_size: int, length: int, device):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, config.vocab_size, (batch_size, length), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 2, 3
    masked, labels = mask_tokens(
        input_ids, mask_token_id=4, vocab_size=config.vocab_size, special_token_ids=(0, 1, 2, 3, 4), generator=generator
    )
    attention_mask = torch.ones_like(input_ids)
    return masked.to(device), labels.to(device), attention_mask.to(device)


def step_functions(config: BertConfig, batch, device, bf16: bool):
    """One training step for ours and for Hugging Face's, as zero-argument callables."""
    masked, labels, attention_mask = batch
    ours, theirs = BertForMaskedLM(config).to(device).train(), huggingface_twin(config).to(device).train()
    ours_optimizer, theirs_optimizer = torch.optim.AdamW(ours.parameters()), torch.optim.AdamW(theirs.parameters())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def ours_step():
        with autocast:
            loss = ours.mlm_loss(masked, labels, attention_mask)
        ours_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ours_optimizer.step()

    def theirs_step():
        with autocast:
            loss = theirs(input_ids=masked, attention_mask=attention_mask, labels=labels).loss
        theirs_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        theirs_optimizer.step()

    return ours_step, theirs_step


def steps_per_second(step, steps: int, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def compare(config: BertConfig, batch_size: int, length: int, device, steps: int, rounds: int, bf16: bool = False):
    """Median steps/s of (ours, Hugging Face) over ``rounds`` alternating rounds of ``steps`` steps."""
    ours_step, theirs_step = step_functions(config, make_batch(config, batch_size, length, device), device, bf16)
    for step in (ours_step, theirs_step):  # warm-up: allocator, kernels, optimiser state
        steps_per_second(step, 3, device)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(steps_per_second(ours_step, steps, device))
        theirs.append(steps_per_second(theirs_step, steps, device))
    return statistics.median(ours), statistics.median(theirs)


def training_flops_per_token(config: BertConfig, length: int, head_fraction: float) -> float:
    """Model FLOPs per token for forward + backward (3x forward), counting multiply-adds as 2.

    Encoder matmuls 2 * (4 D^2 + 2 D F) per layer, attention scores and mixing 4 L D per layer,
    the head's dense D^2 and decoder D V at ``head_fraction`` of the positions.
    """
    D, F, V = config.hidden_size, config.intermediate_size, config.vocab_size
    per_layer = 2 * (4 * D * D + 2 * D * F) + 4 * length * D
    head = 2 * (D * D + D * V) * head_fraction
    return 3 * (config.num_layers * per_layer + head)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also run BERT-base in bf16 on CUDA")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cpu = torch.device("cpu")
    config = BertConfig(**CPU_CONFIG, dropout=0.1)
    ours, theirs = compare(config, batch_size=128, length=16, device=cpu, steps=10, rounds=args.rounds)
    print(f"CPU, course cpu config (D=256, 2 layers, V=600, batch 128 x 16), {torch.get_num_threads()} threads")
    print(f"  course_utils BertForMaskedLM: {ours:6.2f} steps/s")
    print(f"  transformers BertForMaskedLM: {theirs:6.2f} steps/s")
    print(f"  ratio (ours / Hugging Face):  {ours / theirs:6.2f}x   (target >= 1.5x)")

    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA device")
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        base = BertConfig(**BASE_CONFIG, dropout=0.1)
        batch_size, length = 64, 512
        ours, theirs = compare(base, batch_size, length, device, steps=10, rounds=args.rounds, bf16=True)
        tokens = batch_size * length
        for name, rate, head_fraction in (("course_utils", ours, 0.15), ("transformers", theirs, 1.0)):
            flops = training_flops_per_token(base, length, head_fraction) * tokens * rate
            print(
                f"GPU {torch.cuda.get_device_name()}, BERT-base bf16, batch {batch_size} x {length}: {name:>12} "
                f"{rate:5.2f} steps/s, {rate * tokens:9.0f} tokens/s, {flops / 1e12:6.1f} TFLOP/s, "
                f"MFU {flops / H100_BF16_DENSE_PEAK:5.1%} of H100 bf16 peak"
            )
        print(f"  ratio (ours / Hugging Face): {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
