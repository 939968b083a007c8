"""Unit tests for the sentence generator and number spelling."""

import numpy as np
import pytest

from speechbrain_ssv.data.text import SentenceGenerator, number_to_words
from speechbrain_ssv.utils.errors import SSVInputError


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (42, "forty two"),
        (100, "one hundred"),
        (101, "one hundred and one"),
        (999, "nine hundred and ninety nine"),
        (1000, "one thousand"),
        (2005, "two thousand and five"),
        (1984, "one thousand nine hundred and eighty four"),
        (1_000_000, "one million"),
        (3_000_012, "three million and twelve"),
        (-42, "minus forty two"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_to_words_rejects_bad_input():
    with pytest.raises(SSVInputError, match="n"):
        number_to_words(1.5)
    with pytest.raises(SSVInputError, match="out of range"):
        number_to_words(10**12)


def test_number_words_have_no_digits_or_hyphens():
    for n in range(0, 20000, 7):
        text = number_to_words(n)
        assert not any(c.isdigit() for c in text)
        assert "-" not in text


def test_sentences_deterministic_by_index():
    a = SentenceGenerator(seed=11)
    b = SentenceGenerator(seed=11)
    # Asking in a different order must not change a sentence.
    first = [a.sentence(i) for i in range(20)]
    second = [b.sentence(i) for i in reversed(range(20))][::-1]
    assert first == second
    assert SentenceGenerator(seed=12).sentences(20) != first


def test_sentences_deterministic_by_generator():
    gen = SentenceGenerator(seed=3)
    s1 = gen.sentence(np.random.default_rng(5))
    s2 = gen.sentence(np.random.default_rng(5))
    assert s1 == s2


def test_sentence_shape_and_no_digits():
    gen = SentenceGenerator(seed=0)
    sentences = gen.sentences(500)
    assert len(set(sentences)) > 450
    for s in sentences:
        assert not any(c.isdigit() for c in s)
        assert s[0].isupper() and s.endswith(".")
        assert 6 <= len(s.split()) <= 20
    # Numbers do get spoken.
    assert any("hundred" in s or "thousand" in s for s in sentences)


def test_bad_index_and_word_limits():
    with pytest.raises(SSVInputError, match="rng_or_index"):
        SentenceGenerator(0).sentence(-1)
    with pytest.raises(SSVInputError, match="min_words"):
        SentenceGenerator(0, min_words=10, max_words=5)
