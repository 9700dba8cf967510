"""How the demo catalog writes titles, descriptions and queries in each market's language, order and script.

Titles follow the seller conventions of each market (noun first with modifiers after it in Indonesian, Malay,
Thai and Vietnamese; English adjective-first order in SG and mostly-English titles with Filipino tags in PH).
Queries are written the way shoppers type: a subset of attributes in a loose order, filler words dropped,
English words mixed in, habitual and random misspellings, unit variants, Vietnamese without diacritics, Thai
without spaces and with dropped tone marks. Relevance never depends on the wording, only on the attributes.
"""
from __future__ import annotations

import random
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace

from hetmoe.data.demo_vocab import (
    AUDIENCES, BED, COLOURS, MATERIALS, MISSPELLINGS, PHONES, QUERY_EXTRAS, SIZE_KIND, SIZE_LABELS, SIZE_QUERY_FORMS, SIZES,
    THAI_BRANDS, TITLE_EXTRAS, CATEGORIES, Category, Words,
)

# Chance that a shopper (query) or seller (title) uses the English word instead of the local one.
# Low in ID, MY and VN: the multilingual USE does not cover Indonesian, Malay or Vietnamese, the English-only experts
# read only the English words, so which expert suits a query depends on its market (and on its mix of languages).
QUERY_ENGLISH = {"id": 0.2, "ms": 0.25, "fil": 0.55, "th": 0.12, "vi": 0.1, "en": 1.0}
TITLE_ENGLISH = {"id": 0.05, "ms": 0.05, "fil": 0.85, "th": 0.03, "vi": 0.03, "en": 1.0}
TYPO_RATE = 0.2
THAI_TONES = "\u0e48\u0e49\u0e4a\u0e4b"
BRAND_CATEGORIES = Counter(brand for cat in CATEGORIES for brand in cat.brands)


@dataclass(frozen=True)
class Product:
    """One listing's attributes; the only thing relevance labels look at."""

    category: Category
    brand: str
    colour: str | None
    size: str | None
    audience: str | None
    material: str | None
    model: str | None = None  # the family's model number (appliances, electronics)


def _pick(words: Words, lang: str, rng: random.Random, english: float, title: bool) -> str:
    source = words["en"] if rng.random() < english else words[lang]
    return source[0] if title else rng.choice(source)


def _is_thai(ch: str) -> bool:
    return "\u0e00" <= ch <= "\u0e7f"


def _size_value(product: Product, lang: str, rng: random.Random, title: bool) -> str:
    """The size value as written: bed names and phone models are words; decimals take a comma in Indonesian."""
    kind, value = product.category.size, product.size
    assert kind is not None and value is not None
    if kind == "bed":
        forms = BED[value][lang]
        return forms[0] if title else rng.choice(forms)
    if kind == "phone":
        return PHONES[value][0] if title else rng.choice(PHONES[value][1:])
    if SIZE_KIND.get(kind) == "litre" and lang in ("id", "vi") and (title or rng.random() < 0.6):
        return value.replace(".", ",")
    return value


def _size_phrase(product: Product, lang: str, rng: random.Random, title: bool) -> str:
    kind = SIZE_KIND.get(product.category.size or "", product.category.size or "")
    value = _size_value(product, lang, rng, title)
    if title:
        return SIZE_LABELS[kind][lang][0].format(v=value)
    if kind == "litre" and product.category.size != "bag" and rng.random() < 0.15:
        return f"{round(float(product.size or 0) * 1000)}ml"  # 1.8L typed as 1800ml
    if kind == "ml" and int(product.size or 0) >= 500 and rng.random() < 0.2:
        return f"{int(product.size or 0) / 1000:g}L"  # 500ml typed as 0.5L
    return rng.choice(SIZE_QUERY_FORMS[kind][lang]).format(v=value)


def _cap(word: str, lang: str) -> str:
    return word if lang in ("th", "vi") or word[:1].isupper() else word[:1].upper() + word[1:]


def title(product: Product, lang: str, rng: random.Random, style: str = "plain") -> str:
    """A seller's listing title in the market's word order. ``style`` is the seller's (:data:`STYLES`): ``plain``;
    ``short`` (no audience or material, half of them no size either); ``stuffed`` (promotion words, the category's
    other names, and three colours and two sizes the listing does not sell appended: keyword stuffing); ``english`` (a cross-border seller writing English in any market)."""
    if style == "english":
        return title(product, "en", rng)
    eng = TITLE_ENGLISH[lang]
    short = style == "short"
    cat = _pick(product.category.names, lang, rng, eng, True)
    aud = _pick(AUDIENCES[product.audience], lang, rng, eng, True) if product.audience and not short else ""
    mat = _pick(MATERIALS[product.material], lang, rng, eng, True) if product.material and not short else ""
    col = _pick(COLOURS[product.colour], lang, rng, eng, True) if product.colour else ""
    size = _size_phrase(product, lang, rng, True) if product.size and not (short and rng.random() < 0.5) else ""
    extra = rng.choice(TITLE_EXTRAS[lang]) if rng.random() < 0.3 else ""
    brand = f"{product.brand} {product.model}" if product.model else product.brand
    text = _arrange(lang, cat, aud, mat, col, size, extra, brand, product, rng)
    if style == "stuffed":
        names = product.category.names[lang][1:]
        promo = [w for w in TITLE_EXTRAS[lang] if w != extra]
        words = [*rng.sample(promo, 2), *rng.sample(names, min(2, len(names)))]
        if product.colour:  # keyword stuffing: colours and sizes this listing does not sell, for the search engine
            words += [_pick(COLOURS[c], lang, rng, eng, True) for c in rng.sample([c for c in COLOURS if c != product.colour], 3)]
        if product.size and product.category.size:
            others = [v for v in SIZES[product.category.size] if v != product.size]
            words += [_size_phrase(replace(product, size=v), lang, rng, True) for v in rng.sample(others, min(2, len(others)))]
        text += " " + " ".join(words)
    return text


STYLES = ("plain", "short", "stuffed", "english")


def _arrange(lang: str, cat: str, aud: str, mat: str, col: str, size: str, extra: str, brand: str, product: Product,
             rng: random.Random) -> str:
    """The title's words in the market's order."""
    if lang in ("en", "fil"):
        parts = [extra, brand, _cap(aud, lang), _cap(mat, lang), cat, "-" if col or size else "", _cap(col, lang), size]
        if lang == "fil" and rng.random() < 0.35:
            parts += ["|", rng.choice(product.category.names["fil"][1:]).title(),
                      AUDIENCES[product.audience]["fil"][0].title() if product.audience else ""]
    elif lang == "th":
        parts = [cat + aud if _is_thai(cat[-1]) else f"{cat} {aud}".strip(), brand, mat, f"สี{col}" if col else "", size, extra]
    elif lang == "vi":
        parts = [cat, aud, mat, brand, f"màu {col}" if col else "", size, extra]
    else:  # id, ms: noun first, modifiers after
        warna = "Warna " if col and rng.random() < 0.5 else ""
        parts = [extra, cat, _cap(aud, lang), brand, _cap(mat, lang), warna + _cap(col, lang), size]
    return " ".join(p for p in parts if p)


def description(product: Product, lang: str) -> str:
    """A short spec line (the optional ``text`` column): labelled attribute values in the local language."""
    labels = {"en": ("Colour", "Size", "Material"), "id": ("Warna", "Ukuran", "Bahan"), "ms": ("Warna", "Saiz", "Bahan"),
              "th": ("สี", "ขนาด", "วัสดุ"), "vi": ("Màu", "Kích thước", "Chất liệu"), "fil": ("Kulay", "Size", "Materyal")}[lang]
    rng = random.Random(0)  # titles vary; descriptions are fixed per product
    bits = [f"{product.category.names[lang][0]} {product.brand}" + (f" {product.model}." if product.model else ".")]
    if product.colour:
        bits.append(f"{labels[0]}: {COLOURS[product.colour][lang][0]}.")
    if product.size:
        bare = product.category.size in ("apparel", "shoe", "bed", "phone")  # no "Size: Size L"
        size = _size_value(product, lang, rng, True) if bare else _size_phrase(product, lang, rng, True)
        bits.append(f"{labels[1]}: {size.rstrip('.')}.")
    if product.material:
        bits.append(f"{labels[2]}: {MATERIALS[product.material][lang][0]}.")
    return " ".join(bits)


def _model_form(model: str, rng: random.Random) -> str:
    """A model number as shoppers type it: HD3128, hd3128, hd 3128, hd-3128."""
    split = len(model.rstrip("0123456789"))
    head, digits = model[:split].rstrip("-"), model[split:]
    return rng.choice((model, model.lower(), f"{head.lower()} {digits}", f"{head.lower()}-{digits}"))


def strip_diacritics(text: str) -> str:
    """Vietnamese typed without an IME: 'nồi cơm điện' -> 'noi com dien'."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def _typo(text: str, rng: random.Random) -> str:
    """One habitual misspelling if a known word is present, else one random slip in a word."""
    words = text.split(" ")
    known = [i for i, w in enumerate(words) if w.lower() in MISSPELLINGS]
    if known:
        i = rng.choice(known)
        words[i] = MISSPELLINGS[words[i].lower()]
        return " ".join(words)
    thai = [i for i, w in enumerate(words) if any(ch in THAI_TONES for ch in w)]
    if thai:
        i = rng.choice(thai)
        tones = [j for j, ch in enumerate(words[i]) if ch in THAI_TONES]
        j = rng.choice(tones)
        words[i] = words[i][:j] + words[i][j + 1:]
        return " ".join(words)
    latin = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not latin:
        return text
    i = rng.choice(latin)
    w, j = words[i], rng.randrange(1, len(words[i]) - 1)
    op = rng.randrange(3)
    words[i] = w[:j] + w[j + 1:] if op == 0 else w[:j] + w[j + 1] + w[j] + w[j + 2:] if op == 1 else w[:j] + w[j] + w[j:]
    return " ".join(words)


def query(product: Product, mention: frozenset[str], lang: str, rng: random.Random) -> str:
    """A shopper's query for the product, naming only the attributes in ``mention``."""
    eng = QUERY_ENGLISH[lang]
    slots: dict[str, str] = {"category": _pick(product.category.names, lang, rng, eng, False)}
    if "brand" in mention:
        slots["brand"] = THAI_BRANDS.get(product.brand, product.brand) if lang == "th" and rng.random() < 0.5 else product.brand
        if rng.random() < 0.1 and BRAND_CATEGORIES[product.brand] == 1:
            del slots["category"]  # "zojirushi 500ml pink": a one-category brand carries the category
    if "colour" in mention and product.colour:
        col = _pick(COLOURS[product.colour], lang, rng, eng, False)
        prefix = {"th": ("สี", 0.6), "vi": ("màu ", 0.2), "id": ("warna ", 0.1), "ms": ("warna ", 0.15)}.get(lang, ("", 0.0))
        slots["colour"] = (prefix[0] + col) if not col.isascii() and rng.random() < prefix[1] else col
    if "audience" in mention and product.audience:
        slots["audience"] = _pick(AUDIENCES[product.audience], lang, rng, eng, False)
    if "material" in mention and product.material:
        slots["material"] = _pick(MATERIALS[product.material], lang, rng, eng, False)
    if "size" in mention and product.size:
        slots["size"] = _size_phrase(product, lang, rng, False)
    if "model" in mention and product.model:
        slots["model"] = _model_form(product.model, rng)
    order = ("brand", "model", "colour", "audience", "material", "category", "size") if lang == "en" else \
            ("category", "audience", "material", "brand", "model", "colour", "size")
    tokens = [slots[k] for k in order if k in slots]
    if rng.random() < 0.35:
        rng.shuffle(tokens)
    if rng.random() < 0.2:
        tokens.append(rng.choice(QUERY_EXTRAS[lang]))
    squeeze = lang == "th" and rng.random() < 0.5  # Thai shoppers often type without spaces
    text = tokens[0]
    for tok in tokens[1:]:
        text += "" if squeeze and _is_thai(text[-1]) and _is_thai(tok[0]) else " "
        text += tok
    if rng.random() < 0.85:
        text = text.lower()
    if lang == "vi" and rng.random() < 0.55:
        text = strip_diacritics(text)
    if rng.random() < TYPO_RATE:
        text = _typo(text, rng)
    return text
