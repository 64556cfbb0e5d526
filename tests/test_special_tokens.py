"""One special-token layout for every lab: the text tokenizers and the EHR vocabulary agree on every id."""

from course_utils import ehr, masking, text

LAYOUT = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def test_the_layout_is_defined_once_in_masking():
    assert dict(zip(masking.SPECIAL_TOKENS, range(5))) == LAYOUT
    ids = (masking.PAD_ID, masking.UNK_ID, masking.CLS_ID, masking.SEP_ID, masking.MASK_ID)
    assert ids == tuple(LAYOUT.values())
    assert ehr.SPECIAL_TOKENS is masking.SPECIAL_TOKENS and text.SPECIAL_TOKENS is masking.SPECIAL_TOKENS


def test_a_trained_text_tokenizer_uses_the_layout():
    tokenizer = text.train_tokenizer(text.make_corpus(200, seed=0).train, vocab_size=200)
    assert {token: tokenizer.token_to_id(token) for token in LAYOUT} == LAYOUT
    assert text.special_token_ids(tokenizer) == tuple(LAYOUT.values())


def test_the_ehr_vocabulary_uses_the_layout():
    vocabulary = ehr.Vocabulary([*masking.SPECIAL_TOKENS, "LAB//A", "DX//B"])
    assert {token: vocabulary.index[token] for token in LAYOUT} == LAYOUT
    assert (ehr.PAD_ID, ehr.UNK_ID, ehr.CLS_ID, ehr.SEP_ID, ehr.MASK_ID) == tuple(LAYOUT.values())
