"""The embedded demo dataset: a synthetic multilingual e-commerce relevance task over six Southeast Asian markets.

Markets and languages: ID (Indonesian, ``id``), TH (Thai script, ``th``), VN (Vietnamese, ``vi``), MY (Malay,
``ms``), PH (Filipino/English mix, ``fil``), SG (English, ``en``). The vocabulary (``demo_vocab``) is hand-written;
the grammar (``demo_grammar``) renders it. Everything is drawn from ``random.Random`` seeded per market, so one
seed gives byte-identical tables (and ``demo.json`` beside them records the seed and the tables' digests).

Why it is built this way: the catalog carries, in small, what makes the experts complementary on real catalogs, so
that the demo shows the method's argument rather than a tie that flips with the CPU. Thai-script and code-mixed
queries that the English-only experts (minilm, wordllama) cannot read and the multilingual ones (use, e5) can;
model numbers (``HD3128`` vs ``HD3132``) that embeddings barely tell apart and the lexical expert matches; and
near-duplicate listings of one product by several sellers, each title shortened, keyword-stuffed or written in
English in its own way. Stuffed listings name colours and sizes they do not sell, so they look relevant to many
queries; the item neighbourhoods the stacked head reads (a hub's high mean cosine with its neighbours) tell them
apart from the listings that really match.

Grammar, in short:

- catalog: product *families* = category x brand x material x audience (x model number for rice cookers, blenders,
  fans and earbuds; 13 categories: apparel, shoes, bags, kitchen appliances, cookware, bottles, phone cases, fans,
  bedding, skincare, diapers, earbuds), each in 2-5 colour/size variants; a size is a kind-specific value (S-XL,
  EU 38-44, 1.8L, 500ml, 24cm, 16 inch, single/queen/king, phone model). Each variant is listed by 1-4 sellers
  (mean 1.9): near-duplicate listings with the same attributes, hence the same labels.
- title, by seller style: ``plain`` (50%) ``ID/MY  [extra] Category Audience Brand [Model] Material [Warna] Colour
  Size`` (``1,8 Liter`` in ID); ``TH  Category+Audience Brand Material สีColour ไซส์ Size [extra]``; ``VN  Category
  audience material Brand màu colour Size [extra]``; ``SG  [extra] Brand Audience Material Category - Colour Size``;
  PH as SG with some Filipino words and a ``| Damit Panlalaki``-style tag. ``short`` (15%): no audience or material,
  half without the size; ``stuffed`` (25%): promotion words, the category's other names and colours and sizes the
  listing does not sell appended (keyword stuffing: such listings match many queries, the hubs of the catalog);
  ``english`` (10%): a cross-border seller's English title in any market. Most items also get a ``text`` spec line.
- query: one listing's category (any synonym, or the English word: code-mixing) plus 1-3 of its hard attributes
  (colour, size, audience), sometimes its brand (30%), material (20%) or model number (45% where it has one: typed
  ``HD3128``, ``hd 3128``, ``hd-3128``), in a loose order, filler words dropped; unit variants (``1.8L``,
  ``1,8 liter``, ``1800ml``, ``1.8 lít``, ``1.8ลิตร``), habitual or random misspellings (20%), Vietnamese without
  diacritics (55%), Thai without spaces (50%) or with Thai-script brand names.
- labels: same category and every mentioned hard attribute (a mentioned model number counts as one) matches -> 3
  (exact), or 2 if a mentioned brand or material differs (substitute); exactly one hard conflict -> 1 (partial: the
  hard negative); otherwise 0. relevant = label >= 2. Per query 20-25 judged items: 1-6 positives, up to 9 hard
  negatives, up to 3 same-category multi-conflict items, up to 4 other-category items sharing a
  colour/brand/material word, random easy negatives. 3% of labels are then replaced by another grade (label noise).
  Splits by query: 45/15/40 train/valid/test.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hetmoe.data.dataset import write_dataset
from hetmoe.data.demo_grammar import STYLES, Product, description, query, title
from hetmoe.data.demo_vocab import (
    CATEGORIES, COLOURS, ITEMS_PER_MARKET, MARKET_LANG, MODEL_PREFIX, MODEL_SERIES, QUERIES_PER_MARKET, SIZES,
)
from hetmoe.errors import HetmoeError
from hetmoe.files import write_json_atomic
from hetmoe.integrity import file_sha256

log = logging.getLogger(__name__)
MARKETS = ("ID", "TH", "VN", "MY", "PH", "SG")
HARD = ("colour", "size", "audience")
SOFT = ("brand", "material")
JUDGED = (*HARD, "model")  # a mentioned model number is a hard attribute too
MODEL_MENTION = 0.45  # share of queries for a product with a model number that type it
# Listings per product (sellers of the same variant) and the sellers' title styles (``demo_grammar.STYLES``).
COPIES, COPY_WEIGHTS = (1, 2, 3, 4), (0.45, 0.3, 0.15, 0.1)
STYLE_WEIGHTS = (0.5, 0.15, 0.25, 0.1)
NOISE = 0.03
# Queries are cheap to judge and to score, training is what the demo spends its time on: 180 training queries per
# market and many held-out ones, so that choosing the MoE (valid) and comparing the variants (test) are not noise.
TRAIN_SHARE, VALID_SHARE = 0.45, 0.15
DESCRIBED = 0.7  # share of items that carry a text spec line
DEMO_RECORD = "demo.json"  # beside the tables: the generator's arguments, read into reports (the data's seed)


def _catalog(rng: random.Random, n: int) -> list[tuple[Product, str]]:
    """n listings (product, seller's title style): families of variants (same brand/material/audience/model number,
    different colour/size), each variant listed by 1-4 sellers: near-duplicate listings of one product."""
    listings: list[tuple[Product, str]] = []
    models: set[str] = set()
    top = 39 + n // 50  # model numbers per brand and category: twice the families a catalog of n listings can have
    while len(listings) < n:
        cat = rng.choice(CATEGORIES)
        brand = rng.choice(cat.brands)
        material = rng.choice(cat.materials) if cat.materials else None
        audience = rng.choice(cat.audiences) if cat.audiences else None
        model = None
        if cat.key in MODEL_SERIES:
            while model is None or model in models:  # one number per family
                model = f"{MODEL_PREFIX[brand]}{MODEL_SERIES[cat.key]}{rng.randint(10, top)}"
            models.add(model)
        combos = [(c, s) for c in (list(COLOURS) if cat.colour else [None]) for s in (SIZES[cat.size] if cat.size else [None])]
        for colour, size in rng.sample(combos, min(len(combos), rng.randint(2, 5))):
            product = Product(cat, brand, colour, size, audience, material, model)
            for _ in range(rng.choices(COPIES, COPY_WEIGHTS)[0]):
                listings.append((product, rng.choices(STYLES, STYLE_WEIGHTS)[0]))
    return listings[:n]


def _mention(product: Product, rng: random.Random) -> frozenset[str]:
    """Which attributes the shopper types: 1-3 hard ones, sometimes brand or material."""
    hard = [a for a in HARD if getattr(product, a) is not None]
    k = min(len(hard), rng.choices((1, 2, 3), weights=(0.45, 0.4, 0.15))[0])
    chosen = set(rng.sample(hard, k))
    if not hard or rng.random() < 0.3:
        chosen.add("brand")
    if product.material and rng.random() < 0.2:
        chosen.add("material")
    if product.model and rng.random() < MODEL_MENTION:
        chosen.add("model")
    return frozenset(chosen)


class _Rows(Sequence[int]):
    """A numpy index array as the Sequence ``random.sample`` takes: it reads only the k positions it draws, so a
    sample from a million candidates costs what a sample from a list of them costs, without building the list."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return int(self.rows[i])


class _Attributes:
    """The catalog's attributes as integer codes (one vocabulary across the shared ones, -1 for None): a query's
    judging is then a few numpy passes instead of a Python loop over the catalog."""

    def __init__(self, catalog: list[Product]) -> None:
        vocab: dict[object, int] = {None: -1}
        self.category = np.array([vocab.setdefault(p.category.key, len(vocab)) for p in catalog], np.int64)
        self.code = {a: np.array([vocab.setdefault(getattr(p, a), len(vocab)) for p in catalog], np.int64)
                     for a in (*JUDGED, *SOFT)}
        self.vocab = vocab
        order = np.argsort(self.category, kind="stable")
        self._groups = np.split(order, np.flatnonzero(np.diff(self.category[order])) + 1)

    def members(self, item: int) -> np.ndarray:
        """Items of ``item``'s category, ascending."""
        return next(g for g in self._groups if self.category[g[0]] == self.category[item])


def _judge(seed_item: int, mention: frozenset[str], catalog: list[Product], attrs: _Attributes,
           rng: random.Random) -> list[tuple[int, int]]:
    """(item index, label) for one query: positives, hard negatives, lexical distractors, easy negatives. Graded
    relevance from attributes alone: 3 exact, 2 substitute (a mentioned brand or material differs), 1 one hard
    conflict, 0 otherwise (another category, or two conflicts)."""
    wanted = catalog[seed_item]
    same = attrs.members(seed_item)
    conflicts = sum((attrs.code[a][same] != attrs.code[a][seed_item]).astype(np.int64) for a in JUDGED if a in mention)
    soft = np.zeros(same.shape[0], bool)
    for a in SOFT:
        if a in mention:
            soft |= attrs.code[a][same] != attrs.code[a][seed_item]
    graded = np.where(np.asarray(conflicts) > 0, np.where(np.asarray(conflicts) == 1, 1, 0), np.where(soft, 2, 3))
    graded = np.broadcast_to(graded, same.shape)
    positives = same[(graded >= 2) & (same != seed_item)]
    hard, far = same[graded == 1], same[graded == 0]
    shared = ("colour", "brand", "material", "size")  # e.g. an 'L' diaper for 'kaos hitam L'
    words = [attrs.vocab[w] for w in {getattr(wanted, a) for a in shared if a in mention} - {None}]
    others = np.flatnonzero(attrs.category != attrs.category[seed_item])
    hit = np.zeros(others.shape[0], bool)
    for a in shared:
        hit |= np.isin(attrs.code[a][others], words)
    lexical = others[hit]
    chosen = [seed_item] + rng.sample(_Rows(positives), min(len(positives), rng.randint(0, 5)))
    chosen += rng.sample(_Rows(hard), min(len(hard), 9)) + rng.sample(_Rows(far), min(len(far), 3))
    taken = set(chosen)
    chosen += [i for i in rng.sample(_Rows(lexical), min(len(lexical), 4)) if i not in taken]
    target = min(rng.randint(20, 25), len(catalog))
    pool = others[~np.isin(others, np.fromiter(set(chosen), np.int64))]
    chosen += rng.sample(_Rows(pool), max(0, min(len(pool), target - len(chosen))))
    grade_of = dict(zip(same.tolist(), graded.tolist()))
    return [(i, grade_of.get(i, 0)) for i in chosen]


def _market(market: str, n_items: int, n_queries: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(f"hetmoe-demo:{seed}:{market}")
    lang = MARKET_LANG[market]
    prefix = market.lower()
    listings = _catalog(rng, n_items)
    catalog = [product for product, _ in listings]
    item_ids = [f"{prefix}_i{i:05d}" for i in range(n_items)]
    items = [{"item_id": item_ids[i], "title": title(p, lang, rng, style),
              "text": description(p, lang) if rng.random() < DESCRIBED else None, "market": market, "lang": lang}
             for i, (p, style) in enumerate(listings)]
    attrs = _Attributes(catalog)
    queries, judgments, seen = [], [], set()
    n_train, n_valid = round(n_queries * TRAIN_SHARE), round(n_queries * VALID_SHARE)
    splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * (n_queries - n_train - n_valid)
    rng.shuffle(splits)
    for q in range(n_queries):
        for _ in range(20):  # redraw a duplicate query text, so no text leaks across splits
            seed_item = rng.randrange(n_items)
            mention = _mention(catalog[seed_item], rng)
            text = query(catalog[seed_item], mention, lang, rng)
            if text not in seen:
                break
        seen.add(text)
        query_id = f"{prefix}_q{q:04d}"
        queries.append({"query_id": query_id, "text": text, "market": market, "lang": lang})
        for i, label in _judge(seed_item, mention, catalog, attrs, rng):
            if rng.random() < NOISE:
                label = rng.choice([g for g in range(4) if g != label])
            judgments.append({"query_id": query_id, "item_id": item_ids[i], "label": float(label),
                              "relevant": int(label >= 2), "split": splits[q]})
    return items, queries, judgments


def generate_demo(out: Path, items_per_market: int = ITEMS_PER_MARKET, queries_per_market: int = QUERIES_PER_MARKET,
                  seed: int = 0, markets: Sequence[str] = MARKETS) -> Path:
    """Write the demo dataset (items/queries/judgments Parquet) to ``out``; same arguments, same bytes."""
    if items_per_market < 30 or queries_per_market < 10:
        raise HetmoeError(f"demo size too small ({items_per_market} items, {queries_per_market} queries per market); use at least 30 items and 10 queries per market")
    unknown = [m for m in markets if m not in MARKETS]
    if unknown or not markets:
        raise HetmoeError(f"unknown demo market(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(MARKETS)}")
    items, queries, judgments = [], [], []
    for market in markets:
        i, q, j = _market(market, items_per_market, queries_per_market, seed)
        items += i
        queries += q
        judgments += j
    write_dataset(
        out,
        pl.DataFrame(items, schema={"item_id": pl.String, "title": pl.String, "text": pl.String, "market": pl.String, "lang": pl.String}),
        pl.DataFrame(queries, schema={"query_id": pl.String, "text": pl.String, "market": pl.String, "lang": pl.String}),
        pl.DataFrame(judgments, schema={"query_id": pl.String, "item_id": pl.String, "label": pl.Float64, "relevant": pl.Int8, "split": pl.String}),
    )
    record = {"generator": "hetmoe data demo", "seed": seed, "items_per_market": items_per_market,
              "queries_per_market": queries_per_market, "markets": list(markets), "tables": _table_digests(Path(out))}
    write_json_atomic(Path(out) / DEMO_RECORD, record)
    log.info("demo dataset: %d items, %d queries, %d judgments in %d markets -> %s", len(items), len(queries), len(judgments), len(markets), out)
    return Path(out)


def _table_digests(root: Path) -> dict[str, str]:
    return {table: file_sha256(root / f"{table}.parquet") for table in ("items", "queries", "judgments")}


def read_demo_record(root: Path) -> dict[str, Any] | None:
    """How the demo tables in ``root`` were generated (seed, sizes, markets), or None when ``root`` holds no record,
    or one that describes other tables (they were rewritten since: the record would name the wrong seed)."""
    path = root / DEMO_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HetmoeError(f"{path}: not valid JSON ({type(err).__name__}); delete it or generate the demo again") from err
    if not isinstance(record, dict) or not isinstance(record.get("seed"), int) or not isinstance(record.get("tables"), dict):
        raise HetmoeError(f"{path}: not a demo record (no integer 'seed' or no 'tables'); delete it or generate the demo again")
    if record["tables"] != _table_digests(root):
        log.warning("%s describes other tables than the ones beside it; the data's seed is not known", path)
        return None
    return record
