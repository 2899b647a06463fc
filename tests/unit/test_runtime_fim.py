import pytest

from model_runtime.api import ModelLoadError
from model_runtime.fim import find_fim_tokens

HYPHEN_VOCAB = {"<|endoftext|>": 0, "<fim-prefix>": 1, "<fim-middle>": 2, "<fim-suffix>": 3, "a": 4}
UNDERSCORE_VOCAB = {"<|endoftext|>": 0, "<fim_prefix>": 11, "<fim_middle>": 12, "<fim_suffix>": 13}


def test_santacoder_family_is_read_from_the_vocabulary():
    fim = find_fim_tokens(HYPHEN_VOCAB)
    assert (fim.prefix_id, fim.middle_id, fim.suffix_id) == (1, 2, 3)
    assert fim.names == ("<fim-prefix>", "<fim-middle>", "<fim-suffix>")


def test_starcoder_family_is_read_from_the_vocabulary():
    fim = find_fim_tokens(UNDERSCORE_VOCAB)
    assert (fim.prefix_id, fim.middle_id, fim.suffix_id) == (11, 12, 13)


def test_psm_and_spm_layouts():
    fim = find_fim_tokens(HYPHEN_VOCAB)
    assert fim.layout([7, 8], [9], "psm") == [1, 7, 8, 3, 9, 2]
    assert fim.layout([7, 8], [9], "spm") == [1, 3, 9, 2, 7, 8]


def test_spm_prompt_grows_only_at_its_end_when_the_prefix_grows():
    fim = find_fim_tokens(HYPHEN_VOCAB)
    before, after = fim.layout([7, 8], [9, 10], "spm"), fim.layout([7, 8, 5], [9, 10], "spm")
    assert after[: len(before)] == before


def test_explicit_override_wins_and_missing_override_is_a_clear_error():
    vocab = dict(HYPHEN_VOCAB, **UNDERSCORE_VOCAB)
    fim = find_fim_tokens(vocab, ("<fim_prefix>", "<fim_middle>", "<fim_suffix>"))
    assert fim.prefix_id == 11
    with pytest.raises(ModelLoadError, match="fim_tokens"):
        find_fim_tokens(HYPHEN_VOCAB, ("<PRE>", "<MID>", "<SUF>"))


def test_vocabulary_without_fim_tokens_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="fill-in-the-middle"):
        find_fim_tokens({"a": 0, "b": 1})


def test_unknown_order_is_rejected():
    with pytest.raises(ValueError):
        find_fim_tokens(HYPHEN_VOCAB).layout([1], [2], "pms")
