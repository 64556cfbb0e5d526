"""Text (course_utils.text): the corpus, the tokenizer, and MLM metrics on selected positions only."""

import math

import pytest
import torch
from torch import nn

from course_utils.checks import binomial_range
from course_utils.text import (
    CAPITAL_TEMPLATES,
    COUNTRIES,
    SPECIAL_TOKENS,
    FactProbe,
    encode_batch,
    fact_probe_accuracy,
    fill_mask,
    fill_masks,
    load_text_file,
    make_corpus,
    masked_lm_metrics,
    mlm_loss_fn,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(3000, seed=0)


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus.train)


class OracleModel(nn.Module):
    """Knows the right answer at every position of one fixed batch: puts ``confidence`` on it."""

    def __init__(self, answers: torch.Tensor, vocab_size: int, confidence: float = 0.9):
        super().__init__()
        self.answers, self.vocab_size, self.confidence = answers, vocab_size, confidence
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        other = (1 - self.confidence) / (self.vocab_size - 1)
        probabilities = torch.full((*input_ids.shape, self.vocab_size), other)
        probabilities.scatter_(-1, self.answers[: len(input_ids), :, None], self.confidence)
        return probabilities.log()


def test_same_seed_same_corpus_and_different_seed_different_corpus():
    assert make_corpus(500, seed=3).train == make_corpus(500, seed=3).train
    assert make_corpus(500, seed=3).train != make_corpus(500, seed=4).train


def test_held_out_capital_phrasings_never_occur_in_training(corpus):
    train = set(corpus.train)
    for probe in corpus.probes:
        assert probe.text.replace("[MASK]", probe.answer) not in train


def test_every_capital_phrasing_is_trained_for_some_country(corpus):
    train = set(corpus.train)
    for template in CAPITAL_TEMPLATES:
        assert any(template.format(country=c, city=city) in train for c, city, _ in COUNTRIES)


def test_every_country_has_held_out_probes_and_seen_phrasings(corpus):
    probed = {probe.country for probe in corpus.probes}
    assert probed == {country for country, _, _ in COUNTRIES}
    train_text = " ".join(corpus.train)
    for country, city, _ in COUNTRIES:
        assert f"{city} " in train_text and f" {country} " in train_text


def test_seen_probes_are_trained_sentences_of_every_country_and_never_held_out(corpus):
    train = set(corpus.train)
    assert all(probe.text.replace("[MASK]", probe.answer) in train for probe in corpus.seen_probes)
    assert {probe.country for probe in corpus.seen_probes} == {country for country, _, _ in COUNTRIES}
    assert not {probe.text for probe in corpus.seen_probes} & {probe.text for probe in corpus.probes}


def test_heldout_sentences_are_disjoint_from_train(corpus):
    assert corpus.heldout and not set(corpus.heldout) & set(corpus.train)


def test_corpus_mixes_facts_clinical_notes_and_agreement(corpus):
    text = "\n".join(corpus.train)
    assert "the patient presented with" in text and "capital of" in text and " are sleeping" in text


def test_bad_corpus_size_raises_value_error():
    with pytest.raises(ValueError, match="num_sentences"):
        make_corpus(0)


def test_special_tokens_have_bert_ids(tokenizer):
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_training_the_tokenizer_twice_gives_the_same_vocabulary(corpus, tokenizer):
    # Plain WordPieceTrainer gives a different vocabulary on most runs (huggingface/tokenizers#1794):
    # with five trainings, a non-deterministic trainer would almost surely show two vocabularies.
    vocabularies = [train_tokenizer(corpus.train).get_vocab() for _ in range(4)]
    assert all(vocabulary == tokenizer.get_vocab() for vocabulary in vocabularies)


def test_only_the_five_bert_specials_are_special(tokenizer):
    special = [token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special]
    assert sorted(special) == sorted(SPECIAL_TOKENS)
    assert tokenizer.encode("chest", add_special_tokens=False).tokens == ["chest"]


def test_every_probe_answer_is_a_single_token(corpus, tokenizer):
    for probe in corpus.probes:
        assert len(tokenizer.encode(probe.answer, add_special_tokens=False).ids) == 1, probe.answer


def test_encode_batch_adds_cls_sep_pads_and_reports_word_ids(tokenizer):
    batch = encode_batch(tokenizer, ["The patient presented with severe chest pain.", "Dogs bark."])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == batch["word_ids"].shape
    assert (ids[:, 0] == 2).all()
    assert ids[1, mask[1].sum() - 1] == 3 and (ids[1][mask[1] == 0] == 0).all()
    assert (batch["word_ids"][mask == 0] == -1).all() and batch["word_ids"][0, 0] == -1


def test_encode_batch_rejects_a_bare_string(tokenizer):
    with pytest.raises(ValueError, match="texts"):
        encode_batch(tokenizer, "one sentence")


def test_load_text_file_keeps_non_empty_lines(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first line\n\n  second line  \n", encoding="utf-8")
    assert load_text_file(path) == ["first line", "second line"]
    with pytest.raises(ValueError, match="path"):
        load_text_file(tmp_path / "missing.txt")


def test_metrics_score_only_the_selected_positions(corpus, tokenizer):
    """An oracle right at every position with probability 0.9 scores accuracy 1 and perplexity 1/0.9
    exactly, whatever the masks; counting unselected positions would change ``positions``."""
    encoded = encode_batch(tokenizer, corpus.heldout[:64])
    model = OracleModel(encoded["input_ids"], tokenizer.get_vocab_size())
    metrics = masked_lm_metrics(model, encoded, tokenizer, batch_size=64, mlm_probability=0.5)
    assert metrics["accuracy"] == 1.0
    assert math.isclose(metrics["perplexity"], 1 / 0.9, rel_tol=1e-5)
    real_tokens = int((encoded["attention_mask"].bool() & (encoded["input_ids"] > 4)).sum())
    # about half of the eligible tokens are selected: the checks' exact binomial range (FALSE_FAILURE)
    low, high = binomial_range(real_tokens, 0.5)
    assert low <= metrics["positions"] <= high


def test_metrics_use_the_same_masks_for_the_same_seed(corpus, tokenizer):
    encoded = encode_batch(tokenizer, corpus.heldout[:32])
    model = OracleModel(encoded["input_ids"], tokenizer.get_vocab_size(), confidence=0.5)
    assert masked_lm_metrics(model, encoded, tokenizer, seed=1) == masked_lm_metrics(model, encoded, tokenizer, seed=1)


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size(corpus, tokenizer):
    class Uniform(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return torch.zeros(*input_ids.shape, tokenizer.get_vocab_size())

    metrics = masked_lm_metrics(Uniform(), encode_batch(tokenizer, corpus.heldout[:32]), tokenizer)
    assert math.isclose(metrics["perplexity"], tokenizer.get_vocab_size(), rel_tol=1e-5)


def test_fill_mask_and_probe_read_the_mask_position(corpus, tokenizer):
    probe = corpus.probes[0]
    answer_id = tokenizer.token_to_id(probe.answer)

    class AlwaysAnswer(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            logits = torch.zeros(*input_ids.shape, tokenizer.get_vocab_size())
            logits[..., answer_id] = torch.where(input_ids == 4, 10.0, -10.0)  # only at [MASK]
            return logits

    [top] = fill_mask(AlwaysAnswer(), tokenizer, probe.text, top_k=3)
    assert top[0][0] == probe.answer and top[0][1] > 0.9 and len(top) == 3
    same_answer = [p for p in corpus.probes if p.answer == probe.answer]
    assert fact_probe_accuracy(AlwaysAnswer(), tokenizer, corpus.probes) == len(same_answer) / len(corpus.probes)


class AnswerByPosition(nn.Module):
    """At a ``[MASK]`` in position ``p``, puts almost all probability on token id ``10 + p``."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        answer = 10 + torch.arange(input_ids.shape[1]).expand_as(input_ids)  # [B, L]
        logits.scatter_(-1, answer[..., None], torch.where(input_ids == 4, 20.0, 0.0)[..., None])
        return logits


def test_fill_mask_gives_the_top_k_of_every_mask_in_order(tokenizer):
    text = "the [MASK] near the house [MASK] sleeping ."
    positions = encode_batch(tokenizer, [text])["input_ids"][0].eq(4).nonzero().flatten().tolist()
    per_mask = fill_mask(AnswerByPosition(tokenizer.get_vocab_size()), tokenizer, text, top_k=4)
    assert len(positions) == len(per_mask) == 2
    for position, top in zip(positions, per_mask):
        assert len(top) == 4 and top[0][0] == tokenizer.id_to_token(10 + position) and top[0][1] > 0.99
        assert all(p >= q for (_, p), (_, q) in zip(top, top[1:]))


def test_fill_masks_in_one_padded_batch_equal_one_text_at_a_time(corpus, tokenizer):
    from course_utils.models import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32
        )
    )
    texts = ["[MASK] is the capital of [MASK] .", "the doctor prescribed insulin for his [MASK] ."]
    batched = fill_masks(model, tokenizer, texts, top_k=3)
    assert [len(per_text) for per_text in batched] == [2, 1]
    for text, per_text in zip(texts, batched):
        for together, alone in zip(per_text, fill_mask(model, tokenizer, text, top_k=3)):
            assert [token for token, _ in together] == [token for token, _ in alone]
            assert [p for _, p in together] == pytest.approx([p for _, p in alone], abs=1e-5)


def test_fill_mask_without_a_mask_raises_value_error(tokenizer):
    with pytest.raises(ValueError, match=r"at least one \[MASK\]"):
        fill_mask(nn.Linear(1, 1), tokenizer, "no mask here")
    with pytest.raises(ValueError, match="top_k"):
        fill_mask(nn.Linear(1, 1), tokenizer, "the [MASK] .", top_k=0)


def test_the_fact_probe_needs_one_mask_per_probe(corpus, tokenizer):
    two_masks = FactProbe("[MASK] is the capital of [MASK] .", "paris", "france")
    with pytest.raises(ValueError, match="exactly one"):
        fact_probe_accuracy(AnswerByPosition(tokenizer.get_vocab_size()), tokenizer, [two_masks])


@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
def test_mlm_loss_fn_trains_with_every_lab1_strategy(corpus, tokenizer, strategy):
    """Thirty optimiser steps through ``fit`` lower the loss on the same batch and the same masks."""
    from course_utils.models import BertConfig, BertForMaskedLM
    from course_utils.train import TrainConfig, fit

    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32
        )
    )
    batch = encode_batch(tokenizer, corpus.train[:16])
    loss_fn = mlm_loss_fn(tokenizer, strategy=strategy, mlm_probability=0.5)

    def loss_on_fixed_masks():
        torch.manual_seed(1)  # mlm_loss_fn draws its masks from the global generator
        with torch.no_grad():
            return loss_fn(model.eval(), batch).item()

    before = loss_on_fixed_masks()
    fit(model, [batch], loss_fn, TrainConfig(steps=30, lr=1e-2, live_plot=False), torch.device("cpu"))
    after = loss_on_fixed_masks()
    assert after < before - 1.0, (before, after)


def test_loss_and_probe_plot_draws_the_loss_above_every_evaluated_metric():
    import matplotlib.pyplot as plt

    from course_utils.train import History
    from course_utils.viz.bert import plot_loss_and_probes

    history = History(steps=[1, 2, 3, 4], losses=[4.0, 3.0, 2.5, 2.0], lrs=[1e-3] * 4)
    history.evaluations = [{"step": 2, "seen": 0.1, "held out": 0.0}, {"step": 4, "seen": 0.9, "held out": 0.5}]
    fig = plot_loss_and_probes(history)
    loss_ax, metric_ax = fig.axes
    assert list(loss_ax.lines[-1].get_xdata()) == [1, 2, 3, 4] and loss_ax.get_yscale() == "log"
    assert [list(line.get_xdata()) for line in metric_ax.lines] == [[2, 4], [2, 4]]
    assert [list(line.get_ydata()) for line in metric_ax.lines] == [[0.1, 0.9], [0.0, 0.5]]
    assert [text.get_text() for text in metric_ax.get_legend().get_texts()] == ["seen", "held out"]
    plt.close(fig)
    only_seen = plot_loss_and_probes(history, ["seen"])
    assert len(only_seen.axes[1].lines) == 1
    plt.close(only_seen)


def test_loss_and_probe_plot_rejects_unknown_metrics_and_a_history_without_evaluations():
    from course_utils.train import History
    from course_utils.viz.bert import plot_loss_and_probes

    history = History(steps=[1], losses=[1.0], lrs=[1e-3], evaluations=[{"step": 1, "seen": 0.5}])
    with pytest.raises(ValueError, match="metrics"):
        plot_loss_and_probes(history, ["accuracy"])
    with pytest.raises(ValueError, match="evaluations"):
        plot_loss_and_probes(History(steps=[1], losses=[1.0], lrs=[1e-3]))


def test_strategy_plot_draws_one_probe_curve_per_strategy():
    import matplotlib.pyplot as plt

    from course_utils.train import History
    from course_utils.viz.bert import plot_probe_by_strategy

    token = History(evaluations=[{"step": 50, "held out": 0.0}, {"step": 100, "held out": 0.4}])
    span = History(evaluations=[{"step": 50, "held out": 0.2}, {"step": 100, "held out": 0.9}])
    fig = plot_probe_by_strategy({"token": token, "span": span}, "held out")
    ax = fig.axes[0]
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.0, 0.4], [0.2, 0.9]]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["token", "span"]
    plt.close(fig)
    with pytest.raises(ValueError, match="seen"):
        plot_probe_by_strategy({"token": token}, "seen")
