"""Small synthetic catalogs for the store and index tests (never the real data): product-like titles, two markets,
some duplicate titles and some items with a description, valid for ``check_dataset``."""
from __future__ import annotations

import random
from pathlib import Path

import polars as pl

from hetmoe.data.dataset import write_dataset

WORDS = (
    "red blue black white steel wood oak cordless drill hammer lamp led sofa chair table cable usb charger phone case "
    "kaos wanita pria sepatu tas murah original garden hose paint brush screw bolt 12v 20v pack set mini pro xl"
).split()


def _title(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(2, 14)))


def make_catalog(root: Path, n_items: int, n_queries: int = 60, seed: int = 0, tweak: str = "") -> Path:
    """Write a dataset folder; ``tweak`` is appended to item 0's title (a different input with the same ids)."""
    rng = random.Random(seed)
    titles = [_title(rng) for _ in range(n_items)]
    for i in range(5, n_items, 7):  # every 7th title repeats an earlier one: exercises dedup
        titles[i] = titles[rng.randrange(i)]
    titles[0] += tweak
    items = pl.DataFrame({
        "item_id": [f"it{i:06d}" for i in range(n_items)],
        "title": titles,
        "text": [_title(rng) if i % 3 == 0 else None for i in range(n_items)],
        "market": ["us" if i % 2 else "id" for i in range(n_items)],
    })
    queries = pl.DataFrame({
        "query_id": [f"q{i:04d}" for i in range(n_queries)],
        "text": [" ".join(rng.choices(WORDS, k=rng.randint(1, 4))) for _ in range(n_queries)],
        "market": ["us" if i % 2 else "id" for i in range(n_queries)],
    })
    pairs = [(q, rng.randrange(n_items)) for q in range(n_queries) for _ in range(2)]
    judgments = pl.DataFrame({
        "query_id": [f"q{q:04d}" for q, _ in pairs],
        "item_id": [f"it{i:06d}" for _, i in pairs],
        "label": [float(k % 2) for k in range(len(pairs))],
        "relevant": [k % 2 for k in range(len(pairs))],
        "split": ["train" if q % 4 else "valid" for q, _ in pairs],
    }).unique(subset=["query_id", "item_id"], maintain_order=True)
    return write_dataset(root, items, queries, judgments)
