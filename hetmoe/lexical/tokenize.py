"""One tokenizer for items and queries: what BM25, the token-overlap features and the char n-grams all see.

Why not bm25s's splitter: it splits on ``\\w+`` runs, so a Thai sentence (no spaces) becomes one token and "1/2 in."
becomes "1", "2", "in". Here:

- text is repaired (``\\xe2\\x80\\x99`` escape runs decoded, a ``b"..."`` wrapper dropped), NFKC-normalised, lowercased;
- numbers are canonical values: "1/2" and ".5" are "0.5", "1-1/2" is "1.5", "4,5" is "4.5", "1,000" is "1000";
- a number followed by a unit ("3.5in", "10 ft", '24"', "20-amp", "100ml") also yields a quantity token "3.5@in" and a
  unit token "@in", so "1/2 in" matches "1/2 in." and contradicts "3/4 in.";
- "2x4" is the numbers 2 and 4; other letter+digit runs ("rg6", "a50s") stay whole as model tokens;
- Latin-script words are stemmed (Snowball English), Thai runs are segmented with pythainlp's newmm, CJK runs become
  character bigrams, other scripts stay whole words.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import regex

from hetmoe.lexical.units import UNITS

CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
NUM = r"\d+[- ]\d+/\d+(?!\d)|\d+/\d+(?!\d)|\d*\.\d+|\d{1,3}(?:,\d{3})+(?![\d,])|\d+,\d+|\d+"
UNIT_WORDS = "|".join(sorted(map(regex.escape, UNITS), key=len, reverse=True))
ESCAPES = regex.compile(r"(?:\\x[0-9a-fA-F]{2})+")
BYTES_WRAPPER = regex.compile(r"""^b(["'])(.*)\1$""", regex.DOTALL)
APOSTROPHE = regex.compile(r"(?<=\p{L})['’](?=\p{L})")
INCH_MARK = regex.compile(r"(?<=\d)\s*(?:\"|''|″|”)")
FOOT_MARK = regex.compile(r"(?<=\d)\s*(?:'|′|’)(?![\p{L}\p{N}])")
AREA = regex.compile(r"\b(sq|cu|fl)\.?\s*(ft|feet|foot|in|inch|inches|yd|m|oz)\b")
DIMENSION = regex.compile(r"(?<=\d)x(?=\.?\d)")  # "2x4", "84x110": two numbers
QUANTITY = regex.compile(rf"(?<![\p{{L}}\p{{N}}.,/])({NUM})\s*-?\s*({UNIT_WORDS})\.?(?![\p{{L}}\p{{N}}])")
NUMBER = regex.compile(rf"(?<![\p{{L}}\p{{N}}.,/])({NUM})(?![\p{{L}}\p{{N}}])")
TOKEN = regex.compile(rf"\d+\.\d+|\p{{Thai}}+|[{CJK}]+|[[\p{{L}}\p{{M}}\p{{N}}]--[\p{{Thai}}{CJK}]]+", regex.V1)
CJK_CHAR = regex.compile(rf"[{CJK}]")
FRACTION_DENOMINATORS = frozenset((2, 3, 4, 5, 8, 10, 16, 32, 64, 100))
UNIT_VALUES = frozenset(UNITS.values())
CACHE_LIMIT = 500_000  # raw tokens remembered per tokenizer
SEPARATOR = "x"  # the "x" of "24 in. x 36 in." after a number or unit: not a token


@dataclass(frozen=True)
class Tokens:
    """A text as the lexical expert sees it.

    ``terms``: base tokens (stemmed words, canonical numbers, model tokens, Thai words, CJK bigrams) in text order,
    then the extra quantity ("0.5@in") and unit ("@in") tokens and the bigrams of adjacent base tokens ("pvc cap").
    ``n_base``: how many of ``terms`` are base tokens.
    ``surface``: unstemmed base forms joined by spaces (the char n-gram and substring view).
    """

    terms: tuple[str, ...]
    n_base: int
    surface: str

    @property
    def base(self) -> tuple[str, ...]:
        return self.terms[: self.n_base]


def repair(text: str) -> str:
    """Decode literal ``\\xNN`` byte runs and a ``b"..."`` wrapper (scraped titles carry both), NFKC, lowercase."""
    wrapped = BYTES_WRAPPER.match(text)
    if wrapped:
        text = wrapped.group(2)
    if "\\x" in text:
        text = ESCAPES.sub(lambda m: bytes.fromhex(m.group(0).replace("\\x", "")).decode("utf-8", "ignore"), text)
    # NFKC splits Thai SARA AM into NIKHAHIT + SARA AA, which no Thai dictionary knows: put it back together
    text = unicodedata.normalize("NFKC", text).lower().replace("\u0e4d\u0e32", "\u0e33")
    if "'" in text or "’" in text:
        text = APOSTROPHE.sub("", text)
    return text


def number(raw: str) -> tuple[str, ...]:
    """Canonical strings of a matched number: fractions and decimals as values (at most 4 decimals, no trailing zeros);
    "120/240" (not a fraction of a common denominator) is two numbers."""
    if "/" in raw:
        whole, _, frac = raw.replace(" ", "-").rpartition("-")
        top, bottom = (int(part) for part in frac.split("/"))
        if bottom not in FRACTION_DENOMINATORS or top >= bottom:
            return (*(number(whole) if whole else ()), _canonical(top), _canonical(bottom))
        return (_canonical(int(whole or 0) + top / bottom),)
    if "," in raw:
        thousands = regex.fullmatch(r"\d{1,3}(?:,\d{3})+", raw)
        return (_canonical(float(raw.replace(",", "" if thousands else "."))),)
    return (_canonical(float(raw)),)


def _canonical(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


@lru_cache(maxsize=65536)
def thai_words(run: str) -> tuple[str, ...]:
    """newmm segmentation of one Thai run (dictionary max-matching; cached: titles repeat words a lot)."""
    from pythainlp.tokenize import word_tokenize

    return tuple(w for w in word_tokenize(run, engine="newmm", keep_whitespace=False) if w.strip())


class Tokenizer:
    """Callable text -> :class:`Tokens`; ``stem`` switches the English stemmer for Latin-script words.

    Raw tokens repeat across a catalog, so each one's terms and surface form are computed once and cached.
    """

    def __init__(self, stem: bool = True) -> None:
        import Stemmer

        self.stem = stem
        self._stemmer = Stemmer.Stemmer("english")
        self._cache: dict[str, tuple[tuple[str, ...], str]] = {}
        self._stem_lock = threading.Lock()  # Snowball stemmer objects are not thread-safe; only cache misses stem

    def __call__(self, text: str) -> Tokens:
        clean = repair(text)
        extra: list[str] = []
        if any(c.isdigit() for c in clean):
            clean = self._numbers(clean, extra)
        base: list[str] = []
        surface: list[str] = []
        cache = self._cache
        for raw in TOKEN.findall(clean):
            if raw == SEPARATOR and base and (base[-1][:1].isdigit() or base[-1] in UNIT_VALUES):
                continue
            entry = cache.get(raw)
            if entry is None:
                if len(cache) >= CACHE_LIMIT:  # a long-running server sees ever new words: stay bounded
                    cache.clear()
                entry = cache.setdefault(raw, self._classify(raw))
            base.extend(entry[0])
            surface.append(entry[1])
        bigrams = [f"{a} {b}" for a, b in zip(base, base[1:])]  # word order: "pvc cap" is not "cap ... pvc"
        return Tokens(tuple(base + extra + bigrams), len(base), " ".join(surface))

    @staticmethod
    def _numbers(clean: str, extra: list[str]) -> str:
        """Canonical numbers and quantities in place; the quantity and unit tokens go to ``extra``."""
        if '"' in clean or "''" in clean or "″" in clean or "”" in clean:  # substitutions only where they can apply
            clean = INCH_MARK.sub(" in ", clean)
        if "'" in clean or "′" in clean or "’" in clean:
            clean = FOOT_MARK.sub(" ft ", clean)
        if "sq" in clean or "cu" in clean or "fl" in clean:
            clean = AREA.sub(lambda m: f" {'' if m.group(1) == 'fl' else m.group(1)}{m.group(2)} ", clean)
        if "x" in clean:
            clean = DIMENSION.sub(" ", clean)

        def quantity(match: regex.Match[str]) -> str:
            values, unit = number(match.group(1)), UNITS[match.group(2)]
            extra.extend((f"{values[-1]}@{unit}", f"@{unit}"))
            return f" {' '.join(values)} {unit} "

        clean = QUANTITY.sub(quantity, clean)
        return NUMBER.sub(lambda m: f" {' '.join(number(m.group(1)))} ", clean)

    def _classify(self, raw: str) -> tuple[tuple[str, ...], str]:
        """(terms, surface) of one raw token."""
        first = raw[0]
        if "\u0e00" <= first <= "\u0e7f":
            words = thai_words(raw)
            return words, " ".join(words)
        if CJK_CHAR.match(first):
            return ((raw,) if len(raw) == 1 else tuple(raw[i : i + 2] for i in range(len(raw) - 1))), raw
        if raw.isdigit():
            return (_canonical(float(raw)),), raw
        if self.stem and raw.isascii() and raw.isalpha() and len(raw) > 3:
            with self._stem_lock:
                return (self._stemmer.stemWord(raw),), raw
        return (raw,), raw  # numbers with a decimal point, model tokens, short and non-Latin words
