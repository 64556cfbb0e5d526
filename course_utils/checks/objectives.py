"""Checks for Lab 5 (the family around BERT): ELECTRA's sampling, labels and loss, the causal mask and
next-token loss, ALBERT's factorized embedding and shared layer, and the permutation LM's attention masks.

``sample_replacements`` is random: ``check_sample_replacements`` judges eight binomial counts
(``expect_binomial``), so it fails correct work with probability at most 8 * ``FALSE_FAILURE`` over seeds
(``course_utils.checks``, the course's one policy). The other checks are deterministic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks import (
    FALSE_FAILURE,  # noqa: F401  (the lab's hidden tests import it from here)
    expect,
    expect_binomial,
    expect_close,
    expect_input_untouched,
    expect_tensor,
    gradients,
    passed,
)
from course_utils.models import albert, causal_lm, electra, permutation_lm
from course_utils.models.transformer import TransformerBlock

PROBABILITIES = torch.tensor([0.5, 0.3, 0.15, 0.05])  # the sampling check's two distributions: this and reversed


# --------------------------------------------------------------------------- ELECTRA


def sampling_logits(rows: int, offset: float = 5.0) -> torch.Tensor:
    """``[rows, 4]`` logits: even rows put softmax probabilities ``PROBABILITIES`` on the 4 tokens, odd rows
    the reverse. ``offset`` makes every logit positive, so treating logits as probabilities is caught too."""
    logits = PROBABILITIES.log() + offset
    return torch.stack([logits if row % 2 == 0 else logits.flip(0) for row in range(rows)])


def check_sample_replacements(sample_replacements_fn) -> None:
    """Exercise 1: one token per row drawn from softmax(row), drawn through the generator passed in (the same seed
    gives the same draws, another seed other draws, whatever the global random state), one row included; no gradient.

    Eight binomial counts: a correct sampler fails this check with probability at most 8 * ``FALSE_FAILURE``
    (over seeds).
    """
    rows = 4000
    logits = sampling_logits(rows).requires_grad_()
    drawn = expect_input_untouched(sample_replacements_fn, logits, torch.Generator().manual_seed(0))
    expect_tensor(drawn, "the sampled ids", shape=(rows,))
    expect(
        not drawn.is_floating_point() and not drawn.dtype.is_complex and drawn.dtype != torch.bool,
        f"the sampled ids have dtype {drawn.dtype}: return integer token ids (torch.long)",
    )
    expect(bool(((drawn >= 0) & (drawn < 4)).all()), "a sampled id is not a token of the vocabulary (0 <= id < V)")
    expect(
        not drawn.requires_grad,
        "your samples carry a gradient: the draw is not differentiable, so no gradient may flow through it",
    )
    argmax = logits.detach().argmax(-1)
    expect(
        not torch.equal(drawn, argmax),
        "you took the argmax: ELECTRA samples from the generator's softmax",
        "torch.multinomial(probabilities, 1, generator=generator) draws one token per row",
    )
    for parity, probabilities in ((0, PROBABILITIES), (1, PROBABILITIES.flip(0))):
        picks = drawn[parity::2]
        for token, p in enumerate(probabilities.tolist()):
            count = int((picks == token).sum())
            naive = (logits.detach()[parity] / logits.detach()[parity].sum())[token].item()
            looks_like_logits = abs(count / len(picks) - naive) < abs(count / len(picks) - p)
            expect_binomial(
                count,
                len(picks),
                p,
                None,
                (
                    "your draws follow the logits as if they were probabilities (apply the softmax first)"
                    if looks_like_logits
                    else f"token {token} is not drawn with its softmax probability {p}"
                ),
                "softmax over the vocabulary (the last dimension), separately for every row",
                what="a correct sampler",
            )
    passed("the draws follow softmax(logits), row by row")
    torch.manual_seed(1)  # the global random state is the same for both calls: only the generator passed in differs
    other = sample_replacements_fn(logits.detach(), torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    again = sample_replacements_fn(logits.detach(), torch.Generator().manual_seed(0))
    expect(
        torch.equal(drawn, again),
        "the same generator seed must give the same samples: pass generator to the random call",
    )
    expect(
        not torch.equal(again, other),
        "two different generators gave the same draws: draw through the generator passed in, not the global one",
        "torch.multinomial(probabilities, 1, generator=generator)",
    )
    passed("the draws come from the generator passed in")
    one = sample_replacements_fn(logits.detach()[:1], torch.Generator().manual_seed(0))
    expect_tensor(one, "the sample for one row", shape=(1,))
    passed("one row of logits gives one sample")


def corruption_example() -> dict[str, torch.Tensor]:
    """Two sentences (the second padded) with three masked positions; at one of them the generator drew the
    original token back."""
    original = torch.tensor([[2, 11, 12, 13, 14, 3], [2, 15, 16, 3, 0, 0]])
    corrupted = torch.tensor([[2, 11, 19, 13, 14, 3], [2, 15, 16, 3, 0, 0]])  # 12 -> 19 replaced
    corrupted[0, 4] = 14  # masked, and the generator sampled 14 again: original
    corrupted[1, 1] = 17  # 15 -> 17 replaced
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return dict(original_ids=original, corrupted_ids=corrupted, attention_mask=attention_mask)


def check_replaced_token_labels(replaced_token_labels_fn) -> None:
    """Exercise 2: 1 where the corrupted token differs from the original, 0 elsewhere (padding included)."""
    example = corruption_example()
    labels = expect_input_untouched(replaced_token_labels_fn, **example)
    expect_tensor(labels, "the labels", shape=example["original_ids"].shape)
    expected = electra.replaced_token_labels(**example)
    labels, real = labels.float(), example["attention_mask"].bool()
    expect(
        not torch.equal(labels[real], 1 - expected[real]),
        "your labels are flipped: 1 means replaced, 0 means original",
    )
    expect(
        labels[0, 4] == 0,
        "a position where the generator sampled the original token is labelled replaced",
        "label by comparing tokens (corrupted != original), not by which positions were masked: "
        "a correct sample is original, as in the paper",
    )
    expect_close(labels, expected, "your labels differ from corrupted != original on real tokens")
    passed("replaced where the token changed; a sample equal to the original counts as original")
    padded = {key: value.clone() for key, value in example.items()}
    padded["corrupted_ids"][1, 5] = 9  # a different id at a padding position: still not a replaced token
    expect(
        replaced_token_labels_fn(**padded).float()[1, 5] == 0,
        "a padding position is labelled replaced: labels are 0 wherever attention_mask is 0",
    )
    passed("padding is never labelled replaced")


def electra_example(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, generator=generator) * 2
    labels = (torch.rand(3, 7, generator=generator) < 0.3).float()
    attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    return dict(
        generator_mlm_loss=torch.tensor(2.7),
        discriminator_logits=logits,
        labels=labels * attention_mask,
        attention_mask=attention_mask,
    )


def check_electra_loss(electra_loss_fn) -> None:
    """Exercise 3: the generator's MLM loss plus 50 x the discriminator's BCE averaged over real tokens."""
    example = electra_example()
    loss = expect_input_untouched(electra_loss_fn, **example)
    expect_tensor(loss, "the loss", shape=())
    expected = electra.electra_loss(**example)
    mlm, logits, labels, real = (
        example["generator_mlm_loss"],
        example["discriminator_logits"],
        example["labels"],
        example["attention_mask"].bool(),
    )
    bce_real = F.binary_cross_entropy_with_logits(logits[real], labels[real])
    bce_all = F.binary_cross_entropy_with_logits(logits, labels)
    wrong = {
        "lambda is missing: the discriminator's BCE is weighted by discriminator_weight (50)": mlm + bce_real,
        "you weighted the generator's loss instead of the discriminator's": 50 * mlm + bce_real,
        "the BCE is averaged over padding too: average it over real tokens (attention_mask == 1) only": mlm
        + 50 * bce_all,
        "you applied a sigmoid before binary_cross_entropy_with_logits": mlm
        + 50 * F.binary_cross_entropy_with_logits(logits[real].sigmoid(), labels[real]),
        "the BCE is summed over tokens: average it": mlm
        + 50 * F.binary_cross_entropy_with_logits(logits[real], labels[real], reduction="sum"),
    }
    for misconception, value in wrong.items():
        expect(not torch.isclose(loss.detach().float(), value, atol=1e-4), misconception)
    expect_close(loss, expected, "your loss differs from MLM + 50 x BCE over real tokens", atol=1e-4)
    passed("MLM loss + 50 x binary cross-entropy over the real tokens")
    expect_close(
        electra_loss_fn(**example, discriminator_weight=7.0),
        electra.electra_loss(**example, discriminator_weight=7.0),
        "discriminator_weight is ignored: it replaces the 50",
        atol=1e-4,
    )
    leaves = [example["generator_mlm_loss"].clone().requires_grad_(), logits.clone().requires_grad_()]
    arguments = example | dict(generator_mlm_loss=leaves[0], discriminator_logits=leaves[1])
    _, (mlm_grad, logits_grad) = gradients(electra_loss_fn, wrt=leaves, **arguments)
    expect(
        mlm_grad is not None and torch.isclose(mlm_grad, torch.tensor(1.0)),
        "no gradient reaches generator_mlm_loss: the generator is trained by its MLM term in the same loss",
    )
    expect(
        logits_grad is not None and bool((logits_grad[~real] == 0).all()),
        "padding positions receive a gradient: leave them out of the BCE",
    )
    passed("the generator and the discriminator both get their gradient; padding gets none")


# --------------------------------------------------------------------------- causal LM


def keep_mask_example() -> torch.Tensor:
    return torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])


def expect_causal_mask(mask, attention_mask: torch.Tensor) -> None:
    """The contract: a bool ``[B, L, L]``; a real query sees exactly the real keys at or before it; a padded
    query's row is not all False (its output is never read, but SDPA turns an empty row into NaN)."""
    batch, length = attention_mask.shape
    expect_tensor(mask, "the attention mask", shape=(batch, length, length))
    expect(mask.dtype == torch.bool, f"return a boolean mask (True = may attend), got dtype {mask.dtype}")
    expected = causal_lm.causal_attention_mask(attention_mask)
    real = attention_mask.bool()
    rows = real[:, :, None].expand_as(mask)  # [B, L, L]: entries of real queries
    later = torch.ones(length, length, dtype=torch.bool).triu(1).expand_as(mask)
    expect(
        not (mask & later & rows).any(),
        "a token can attend to a later token: query i may only see keys j <= i",
        "torch.tril keeps j <= i",
    )
    diagonal = torch.eye(length, dtype=torch.bool).expand_as(mask)
    expect(bool(mask[diagonal & rows].all()), "a token cannot see itself: query i sees keys j <= i, i included")
    expect(
        not (mask & rows & ~real[:, None, :]).any(),
        "a real token can attend to [PAD]: combine the causal mask with the padding mask",
    )
    expect(
        torch.equal(mask[rows], expected[rows]),
        "a real query does not see every real key at or before it",
    )
    expect(bool(mask.any(-1).all()), "a row of your mask is all False: SDPA returns NaN for a query that sees nothing")


def check_causal_attention_mask(causal_attention_mask_fn) -> None:
    """Exercise 4: query i sees real keys j <= i; padding is never seen."""
    attention_mask = keep_mask_example()
    expect_causal_mask(expect_input_untouched(causal_attention_mask_fn, attention_mask), attention_mask)
    passed("no token sees a later token or padding; each sees itself and everything before it")
    full = torch.ones(2, 6, dtype=torch.long)
    expect_causal_mask(causal_attention_mask_fn(full), full)
    passed("without padding it is the lower triangle")


def next_token_example(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    input_ids = torch.randint(5, 30, (3, 6), generator=generator) * attention_mask
    logits = torch.randn(3, 6, 30, generator=generator)
    return dict(logits=logits, input_ids=input_ids, attention_mask=attention_mask)


def check_next_token_loss(next_token_loss_fn) -> None:
    """Exercise 5: position t predicts token t + 1; only real next tokens count (``attention_mask`` says which: token
    id 0 is an ordinary token); the mean over them; one row works."""
    example = next_token_example()
    loss = expect_input_untouched(next_token_loss_fn, **example)
    expect_tensor(loss, "the loss", shape=())
    logits, ids, real = example["logits"], example["input_ids"], example["attention_mask"].bool()
    expected = causal_lm.next_token_loss(**example)
    unshifted = F.cross_entropy(logits[real], ids[real])
    expect(
        not torch.isclose(loss.detach().float(), unshifted, atol=1e-4),
        "you predicted each token from its own position: the logits at t predict token t + 1",
    )
    backwards = F.cross_entropy(logits[:, 1:][real[:, 1:]], ids[:, :-1][real[:, 1:]])
    expect(
        not torch.isclose(loss.detach().float(), backwards, atol=1e-4),
        "you shifted the wrong way: the logits at t predict token t + 1, not t - 1",
        "logits[:, :-1] against input_ids[:, 1:]",
    )
    with_padding = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    expect(
        not torch.isclose(loss.detach().float(), with_padding, atol=1e-4),
        "padding counts as a target: only positions whose next token is real are predicted",
    )
    expect_close(loss, expected, "your loss differs from the mean cross-entropy over real next tokens", atol=1e-4)
    passed("logits at t predict token t + 1, averaged over the real next tokens")
    leaf = logits.clone().requires_grad_()
    _, (grad,) = gradients(next_token_loss_fn, wrt=[leaf], **(example | dict(logits=leaf)))
    predicting, _ = causal_lm.next_token_targets(ids, example["attention_mask"])
    expect(grad is not None, "no gradient reaches the logits")
    expect(
        bool((grad[~predicting] == 0).all()),
        "a position with no real next token (the last real one, or padding) receives a gradient",
    )
    passed("only positions with a real next token get a gradient")
    zero = example | dict(input_ids=ids.clone())
    zero["input_ids"][0, 3] = 0  # a real token whose id is 0
    zero["input_ids"][1, 4:] = 7  # padding whose id is not 0
    expect_close(
        next_token_loss_fn(**zero),
        causal_lm.next_token_loss(**zero),
        "you took token id 0 for padding: attention_mask says which tokens are real, and id 0 is an ordinary token",
        atol=1e-4,
    )
    passed("token id 0 is an ordinary token; attention_mask marks the padding")
    one_row = {key: value[1:2] for key, value in example.items()}
    expect_close(
        next_token_loss_fn(**one_row),
        causal_lm.next_token_loss(**one_row),
        "your loss is wrong for a batch of one row",
        atol=1e-4,
    )
    passed("a batch of one row works")


# --------------------------------------------------------------------------- ALBERT


def check_factorized_embedding(factorized_embedding_fn) -> None:
    """Exercise 6: look up ``[V, E]`` rows, then project ``E -> H``."""
    torch.manual_seed(0)
    token_table, projection = torch.nn.Embedding(40, 8), torch.nn.Linear(8, 24)
    input_ids = torch.randint(0, 40, (3, 5))
    hidden = expect_input_untouched(factorized_embedding_fn, input_ids, token_table, projection)
    expect(
        not (isinstance(hidden, torch.Tensor) and tuple(hidden.shape) == (3, 5, 8)),
        "your output has width E: project the looked-up rows to the hidden width H",
    )
    expect_tensor(hidden, "the embedding", shape=(3, 5, 24))
    with torch.no_grad():
        expected = projection(token_table(input_ids))
    expect_close(hidden, expected, "your embedding differs from projection(token_table(input_ids))")
    passed("[B, L] -> [B, L, E] -> [B, L, H]")
    _, grads = gradients(factorized_embedding_fn, input_ids, token_table, projection, wrt=[token_table.weight])
    expect(grads[0] is not None, "no gradient reaches the token table: look the ids up in token_table")
    passed("the V x E table is trained through the projection")


def check_factorized_embedding_parameters(parameters_fn) -> None:
    """Exercise 7: ``V E + E H + H`` (the token table, the projection and its bias)."""
    for vocab, embedding, hidden in ((30_000, 128, 768), (1000, 16, 64)):
        count = parameters_fn(vocab, embedding, hidden)
        expect(
            isinstance(count, int) and not isinstance(count, bool),
            f"return an int, got {type(count).__name__}",
        )
        expect(count != vocab * hidden, "V x H is BERT's unfactorized table: ALBERT has V x E plus E x H")
        expect(
            count != vocab * embedding + embedding * hidden,
            "you left out the projection's bias (H parameters)",
        )
        expected = albert.factorized_embedding_parameters(vocab, embedding, hidden)
        expect(count == expected, f"V={vocab}, E={embedding}, H={hidden}: expected {expected:,}, got {count:,}")
    passed("V E + E H + H: 3,939,072 for ALBERT-base's sizes against 23,040,000 for V x H")


def shared_block(seed: int = 0) -> TransformerBlock:
    torch.manual_seed(seed)
    return TransformerBlock(16, 2, mlp_dim=32, norm_first=False).eval()


def reference_shared_layers(block, hidden, num_layers, attention_mask):
    for _ in range(num_layers):
        hidden = block(hidden, attention_mask)
    return hidden


def check_shared_layer_forward(shared_layer_forward_fn) -> None:
    """Exercise 8: one block applied ``num_layers`` times, so every layer trains the same parameters."""
    block = shared_block()
    hidden = torch.randn(2, 5, 16)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    out = expect_input_untouched(shared_layer_forward_fn, block, hidden, 3, attention_mask)
    expect_tensor(out, "the output", shape=(2, 5, 16))
    with torch.no_grad():
        once = block(hidden, attention_mask)
        expected = reference_shared_layers(block, hidden, 3, attention_mask)
    expect(not torch.allclose(out, once, atol=1e-5), "you applied the block once: apply it num_layers times")
    expect_close(out, expected, "your output differs from block applied num_layers times, one after another")
    passed("the block applied num_layers times")
    parameters = list(block.parameters())
    _, grads = gradients(shared_layer_forward_fn, block, hidden, 3, attention_mask, wrt=parameters)
    expect(
        all(grad is not None for grad in grads),
        "the block passed in receives no gradient: you copied it, so each layer has its own parameters",
        "call the same block in every layer; ALBERT shares one set of weights",
    )
    passed("every layer trains the same parameters")


# --------------------------------------------------------------------------- permutation LM


def permutation_example() -> dict:
    """Three sentences: 6, 4 and 2 real tokens, with fixed factorization orders."""
    attention_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    order = torch.tensor([[3, 0, 5, 1, 4, 2], [2, 0, 3, 1, 4, 5], [1, 0, 2, 3, 4, 5]])
    return dict(order=order, num_predict=2, attention_mask=attention_mask)


def expect_permutation_masks(result, order, num_predict, attention_mask) -> None:
    """The contract of ``permutation_attention_masks``, by rank in the order (``rank[order[t]] = t``):

    * ``content_mask [B, L, L]``: a real position ``i`` sees exactly the real ``j`` with rank(j) <= rank(i);
    * ``query_mask [B, L, L]``: a target ``i`` sees exactly the ``j`` with rank(j) < rank(i);
    * ``targets [B, L]``: the last ``min(num_predict, n - 1)`` real positions of the order (n real tokens);
    * no row of either mask is all False (SDPA returns NaN for it); rows nobody reads are otherwise free.
    """
    expect(isinstance(result, (tuple, list)) and len(result) == 3, "return (content_mask, query_mask, targets)")
    content, query, targets = result
    batch, length = order.shape
    for name, mask in (("content_mask", content), ("query_mask", query)):
        expect_tensor(mask, name, shape=(batch, length, length))
        expect(mask.dtype == torch.bool, f"{name} must be boolean (True = may attend), got {mask.dtype}")
    expect_tensor(targets, "targets", shape=(batch, length))
    expect(targets.dtype == torch.bool, f"targets must be boolean, got {targets.dtype}")
    expected_content, expected_query, expected_targets = permutation_lm.permutation_attention_masks(
        order, num_predict, attention_mask
    )
    real = attention_mask.bool()
    rank = permutation_lm.order_ranks(order)
    expect(
        torch.equal(targets, expected_targets),
        "targets are the last min(num_predict, n - 1) real positions of the order"
        + (" (you picked the first ones)" if torch.equal(targets, real & (rank < num_predict)) else ""),
        "the first position of the order is never a target: nothing precedes it",
    )
    passed("targets: the last num_predict positions of the order")
    positions = torch.arange(length)
    real_rows = real[:, :, None].expand_as(content)  # [B, L, L]: the rows of real positions
    by_position = (positions[None, :] <= positions[:, None]) & real[:, None, :]  # [B, L, L]: j <= i in the sentence
    expect(
        torch.equal(by_position[real_rows], expected_content[real_rows])
        or not torch.equal(content[real_rows], by_position[real_rows]),
        "your content mask follows positions in the sentence: compare ranks in the factorization order",
        "rank[b, order[b, t]] = t gives each position's step in the order (order.argsort(dim=1))",
    )
    same = rank[:, None, :] == rank[:, :, None]
    expect(
        bool(content[same & real_rows].all()),
        "in the content stream a token cannot see itself: h_i sees rank(j) <= rank(i), itself included",
    )
    expect(
        torch.equal(content[real_rows], expected_content[real_rows]),
        "a real position's content row is wrong: it sees the real j with rank(j) <= rank(i)",
    )
    passed("content stream: each token sees itself and what precedes it in the order")
    target_rows = targets[:, :, None].expand_as(query)
    expect(
        not query[same & target_rows].any(),
        "a target's query stream sees its own token: that is the answer it must predict",
        "query_mask uses rank(j) < rank(i), strictly",
    )
    expect(
        torch.equal(query[target_rows], expected_query[target_rows]),
        "a target's query row is wrong: it sees exactly the j with rank(j) < rank(i)",
    )
    for name, mask in (("content_mask", content), ("query_mask", query)):
        expect(
            bool(mask.any(-1).all()), f"a row of {name} is all False: SDPA returns NaN for a query that sees nothing"
        )
    passed("query stream: each target sees what precedes it, never itself")


def check_permutation_attention_masks(permutation_attention_masks_fn) -> None:
    """Exercise 9: content and query masks from a factorization order, and the last K targets."""
    example = permutation_example()
    result = expect_input_untouched(permutation_attention_masks_fn, **example)
    expect_permutation_masks(result, **example)


REFERENCES = {
    "sample_replacements": ("course_utils.models.electra:sample_replacements",),
    "replaced_token_labels": ("course_utils.models.electra:replaced_token_labels",),
    "electra_loss": ("course_utils.models.electra:electra_loss", "course_utils.models.electra:_replaced_token_loss"),
    "causal_attention_mask": ("course_utils.models.causal_lm:causal_attention_mask",),
    "next_token_loss": (
        "course_utils.models.causal_lm:next_token_loss",
        "course_utils.models.causal_lm:CausalLM.next_token_loss",
    ),
    "factorized_embedding": ("course_utils.models.albert:FactorizedEmbedding.forward",),
    "factorized_embedding_parameters": (
        "course_utils.models.albert:factorized_embedding_parameters",
        "course_utils.models.albert:albert_parameter_count",
    ),
    "shared_layer_forward": ("course_utils.models.transformer:TransformerEncoder.forward",),
    "permutation_attention_masks": ("course_utils.models.permutation_lm:permutation_attention_masks",),
}
