"""Seeded English sentence generator for synthetic speech.

The embedded corpus (:mod:`speechbrain_ssv.minivox`) and the TTS
synthesis code need plenty of varied, pronounceable text without shipping a
text corpus. Sentences come from a small phrase-structure grammar over word
lists written for this package. Numbers are always spelled out in words
(``42 -> "forty two"``, words separated by single spaces, no hyphens) so a
synthesiser never has to guess how to read digits and the transcript stays
identical to what is spoken.

A sentence has 6 to 20 words, i.e. about 2 to 8 s of speech at ordinary
speaking rates (150-200 words per minute).

Authors
 * speechbrain-ssv developers 2026
"""

import numpy as np

from speechbrain_ssv.utils.errors import SSVInputError

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def _below_thousand(n):
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
        if n:
            words.append("and")
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n):
    """Spell an integer out in (British-style) English words.

    Words are separated by single spaces; there are no hyphens and no
    commas, so the result can be fed to any synthesiser verbatim.

    Arguments
    ---------
    n : int
        The number, ``abs(n) < 10**12``.

    Returns
    -------
    str
        The number in words.

    Example
    -------
    >>> number_to_words(42)
    'forty two'
    >>> number_to_words(0)
    'zero'
    >>> number_to_words(1905)
    'one thousand nine hundred and five'
    >>> number_to_words(-3)
    'minus three'
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise SSVInputError("n", f"expected an integer, got {n!r}")
    n = int(n)
    if abs(n) >= 10**12:
        raise SSVInputError("n", f"{n} is out of range; expected |n| < 10**12")
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 1000:
        return " ".join(_below_thousand(n))
    words = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    if n:
        # "two thousand and five": the "and" only when no hundreds follow.
        if n < 100:
            words.append("and")
        words += _below_thousand(n)
    return " ".join(words)


_WORDS = {
    "name": (
        "Anna Boris Clara Daniel Elena Felix Greta Henry Irene Jonas Karen "
        "Louis Maria Nathan Olga Peter Rosa Simon Tessa Victor Wendy Oscar "
        "Hugo Lena Martin Nora Paul Ruth Samuel Vera"
    ).split(),
    "det": "the a my your our their this that every one".split(),
    "adj": (
        "old young quiet bright small large heavy careful happy tired "
        "strange simple famous empty narrow yellow golden silver wooden "
        "gentle clever patient noisy distant modern ancient lovely cold "
        "warm green purple"
    ).split(),
    "noun": (
        "teacher farmer doctor painter driver child neighbour sailor "
        "student baker engineer musician gardener pilot writer captain "
        "nurse clerk singer traveller"
    ).split(),
    "thing": (
        "letter garden window bicycle river mountain basket station "
        "kitchen bridge lantern carpet newspaper violin harbour forest "
        "village market ticket blanket engine picture island candle "
        "machine orchard library tunnel parcel umbrella"
    ).split(),
    "verb_t": (
        "painted found carried opened repaired visited cleaned described "
        "watched followed borrowed noticed delivered remembered counted "
        "measured ordered collected packed checked"
    ).split(),
    "verb_i": (
        "waited laughed travelled whispered listened arrived worked "
        "smiled rested wandered"
    ).split(),
    "prep": (
        "near behind beside across under above inside around beyond towards"
    ).split(),
    "time": (
        "yesterday morning|last winter|on monday|after lunch|before dawn|"
        "every evening|in the spring|late at night|on a sunny day|"
        "during the storm|at the weekend|this afternoon"
    ).split("|"),
    "adv": (
        "slowly quickly quietly carefully gladly suddenly patiently "
        "proudly calmly gently"
    ).split(),
    "unit": (
        "minutes hours days weeks miles metres kilograms pages boxes "
        "apples coins steps"
    ).split(),
    "conj": "and but because while although so".split(),
    "month": (
        "January February March April May June July August September "
        "October November December"
    ).split(),
}


class SentenceGenerator:
    """Seeded generator of grammatical English sentences.

    Two generators built with the same seed produce the same sentence for
    the same index, whatever was asked before (each index gets its own
    random stream), so corpora built from it are reproducible and can be
    generated in parallel in any order.

    Arguments
    ---------
    seed : int
        Base seed.
    min_words : int
        Fewest words in a sentence.
    max_words : int
        Most words in a sentence.

    Example
    -------
    >>> gen = SentenceGenerator(seed=7)
    >>> s = gen.sentence(3)
    >>> s == SentenceGenerator(seed=7).sentence(3)
    True
    >>> any(c.isdigit() for c in s)
    False
    """

    def __init__(self, seed=0, min_words=6, max_words=20):
        if min_words < 3 or max_words < min_words:
            raise SSVInputError(
                "min_words/max_words",
                f"got {min_words}/{max_words}; expected 3 <= min_words <= max_words",
            )
        self.seed = int(seed)
        self.min_words = int(min_words)
        self.max_words = int(max_words)

    def _rng(self, rng_or_index):
        if isinstance(rng_or_index, np.random.Generator):
            return rng_or_index
        if isinstance(rng_or_index, (int, np.integer)) and rng_or_index >= 0:
            return np.random.default_rng([self.seed, 7411, int(rng_or_index)])
        raise SSVInputError(
            "rng_or_index",
            f"expected a numpy Generator or a non-negative int, got {rng_or_index!r}",
        )

    @staticmethod
    def _pick(rng, key):
        words = _WORDS[key]
        return words[int(rng.integers(len(words)))]

    def _noun_phrase(self, rng, human):
        if human and rng.random() < 0.35:
            return self._pick(rng, "name")
        words = [self._pick(rng, "det")]
        if rng.random() < 0.6:
            words.append(self._pick(rng, "adj"))
        words.append(self._pick(rng, "noun" if human else "thing"))
        return " ".join(words)

    def _quantity(self, rng):
        # Mostly small numbers (how people talk), sometimes large ones so
        # that hundreds/thousands get spoken too.
        if rng.random() < 0.7:
            n = int(rng.integers(2, 100))
        else:
            n = int(rng.integers(100, 10000))
        return f"{number_to_words(n)} {self._pick(rng, 'unit')}"

    def _clause(self, rng):
        words = [self._noun_phrase(rng, human=True)]
        if rng.random() < 0.3:
            words.append(self._pick(rng, "adv"))
        kind = rng.random()
        if kind < 0.55:
            words += [self._pick(rng, "verb_t"), self._noun_phrase(rng, False)]
        elif kind < 0.8:
            words += [self._pick(rng, "verb_i"), "for", self._quantity(rng)]
        else:
            words += [self._pick(rng, "verb_t"), self._quantity(rng)]
        if rng.random() < 0.5:
            words += [self._pick(rng, "prep"), self._noun_phrase(rng, False)]
        return " ".join(words)

    def _tail(self, rng):
        kind = rng.random()
        if kind < 0.5:
            return self._pick(rng, "time")
        if kind < 0.75:
            day = number_to_words(int(rng.integers(1, 29)))
            return f"on {day} {self._pick(rng, 'month')}"
        year = int(rng.integers(1900, 2030))
        return f"in {number_to_words(year)}"

    def sentence(self, rng_or_index):
        """Generate one sentence.

        Arguments
        ---------
        rng_or_index : int | numpy.random.Generator
            A sentence index (reproducible from the seed alone) or a
            generator to draw from (reproducible from its state).

        Returns
        -------
        str
            A capitalised sentence ending with a full stop, all numbers in
            words.

        Example
        -------
        >>> s = SentenceGenerator(seed=1).sentence(0)
        >>> s[0].isupper() and s.endswith(".")
        True
        >>> 6 <= len(s.split()) <= 20
        True
        """
        rng = self._rng(rng_or_index)
        for _ in range(50):
            parts = [self._clause(rng)]
            if rng.random() < 0.45:
                parts += [self._pick(rng, "conj"), self._clause(rng)]
            if rng.random() < 0.5:
                parts.append(self._tail(rng))
            text = " ".join(parts)
            if self.min_words <= len(text.split()) <= self.max_words:
                break
        words = text.split()
        if len(words) > self.max_words:
            words = words[: self.max_words]
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def sentences(self, n, start=0):
        """Generate ``n`` sentences with indices ``start .. start + n - 1``.

        Arguments
        ---------
        n : int
            How many.
        start : int
            First index.

        Returns
        -------
        list of str
            The sentences.

        Example
        -------
        >>> len(SentenceGenerator(seed=2).sentences(4))
        4
        """
        return [self.sentence(start + i) for i in range(n)]
