"""``LexicalModel``: the lexical expert's public face (fit on a catalog, save, load, pair features for the Scorer).

Features are request-independent: a pair's row depends only on its query text, its item and the catalog statistics
fitted offline, never on the other candidates of the call, so they can be computed for any subset of candidates and
cached or precomputed in bulk for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.lexical.catalog import LexicalCatalog, fit_catalog
from hetmoe.lexical.config import LexicalConfig
from hetmoe.lexical.ngrams import WordGrams
from hetmoe.lexical.features import FEATURE_NAMES, pair_features
from hetmoe.lexical.persist import REFIT, load_catalog, save_catalog
from hetmoe.lexical.query import QueryBatch
from hetmoe.lexical.tokenize import Tokenizer

CHUNK_PAIRS = 16384  # pairs per numpy pass in bulk calls: bounds the gathered n-gram entries to ~2M


class LexicalModel:
    """BM25, char n-gram TF-IDF and token-overlap features of (query, item) pairs over one fitted catalog."""

    def __init__(self, catalog: LexicalCatalog, feature_names: list[str] | None = None) -> None:
        if feature_names is not None and feature_names != FEATURE_NAMES:
            raise HetmoeError(
                "lexical model was saved with other feature names than this hetmoe computes; fit it again"
            )
        self.catalog = catalog
        self.feature_names: list[str] = list(FEATURE_NAMES)
        self.item_ids: np.ndarray = catalog.item_ids
        self.config: LexicalConfig = catalog.config
        self._tokenizer = Tokenizer(stem=catalog.config.stem)
        self._grams = WordGrams(catalog.config)
        self._rows = {item: i for i, item in enumerate(catalog.item_ids.tolist())}

    @classmethod
    def fit(
        cls,
        item_ids: Sequence[str],
        titles: Sequence[str],
        texts: Sequence[str | None] | None,
        markets: Sequence[str],
        langs: Sequence[str | None] | None = None,
        config: LexicalConfig | None = None,
        progress: bool = False,
    ) -> LexicalModel:
        """Fit on the whole catalog (corpus statistics over all items). ``markets`` and ``langs`` are checked for
        length only: statistics are the catalog's, and the tokenizer picks its rules per script, not per language."""
        n = len(item_ids)
        if (
            len(titles) != n
            or len(markets) != n
            or (texts is not None and len(texts) != n)
            or (langs is not None and len(langs) != n)
        ):
            raise HetmoeError(
                "LexicalModel.fit: item_ids, titles, texts, markets and langs must have one entry per item"
            )
        if len(set(item_ids)) != n:
            raise HetmoeError("LexicalModel.fit: item ids must be unique; deduplicate the catalog")
        texts = texts if texts is not None else [None] * n
        return cls(fit_catalog(item_ids, titles, texts, config or LexicalConfig(), progress=progress))

    def append(self, item_ids: Sequence[str], titles: Sequence[str], texts: Sequence[str | None] | None = None
               ) -> LexicalModel:
        """This model grown by new items, weighed with the fitted statistics (:mod:`hetmoe.lexical.append`)."""
        from hetmoe.lexical.append import append_catalog

        return LexicalModel(append_catalog(self.catalog, item_ids, titles, texts), self.feature_names)

    def save(self, folder: Path) -> None:
        save_catalog(self.catalog, Path(folder), self.feature_names)

    @classmethod
    def load(cls, folder: Path, rebuild: str | None = None) -> LexicalModel:
        """The saved model; ``rebuild``: the command a damaged-file error names (default: a generic refit)."""
        catalog, names = load_catalog(Path(folder), rebuild or REFIT)
        return cls(catalog, names)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row index of each id in the fitted catalog; unknown ids raise KeyError naming a few of them."""
        get = self._rows.get
        found = [get(item, -1) for item in item_ids]
        if -1 in found:
            unknown = [item for item, row in zip(item_ids, found) if row < 0]
            raise KeyError(
                f"{len(unknown)} item id(s) not in the lexical model's catalog, e.g. {unknown[:3]}; "
                "refit it on this catalog"
            )
        return np.asarray(found, dtype=np.int64)

    def features(
        self, queries: Sequence[str], rows: np.ndarray, groups: np.ndarray, markets: Sequence[str] | None = None
    ) -> np.ndarray:
        """(n_pairs, F) float32 for pairs (queries[groups[j]], item row rows[j]); each distinct query is tokenized once.

        ``markets`` (one per query) is checked for length only: lexical features use the catalog's statistics."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        groups = np.asarray(groups, dtype=np.int64).ravel()
        if rows.shape != groups.shape:
            raise HetmoeError(
                f"lexical features: rows ({rows.size}) and groups ({groups.size}) must have one entry per pair"
            )
        if markets is not None and len(markets) != len(queries):
            raise HetmoeError(
                f"lexical features: {len(markets)} markets for {len(queries)} queries; pass one per query"
            )
        if rows.size and (
            rows.min() < 0 or rows.max() >= self.item_ids.size or groups.min() < 0 or groups.max() >= len(queries)
        ):
            raise HetmoeError("lexical features: a row or group index is out of range; use rows() and query positions")
        if rows.size == 0:
            return np.zeros((0, len(self.feature_names)), dtype=np.float32)
        if len(queries) == 1:  # the online call
            texts, mapped = [queries[0]], groups
        else:  # each distinct text once, whatever positions it has
            used = np.unique(groups)
            texts = list(dict.fromkeys(queries[g] for g in used.tolist()))
            position = {text: i for i, text in enumerate(texts)}
            remap = np.empty(int(used.max()) + 1, dtype=np.int64)
            remap[used] = [position[queries[g]] for g in used.tolist()]
            mapped = remap[groups]
        return self.prepared_features(self.prepare_queries(texts), rows, mapped)

    def prepare_queries(self, texts: Sequence[str]) -> QueryBatch:
        """The query side of ``texts`` (tokens, term and n-gram sets, counts): depends on the texts and the catalog
        only, so a caller that sees a query again may keep it (the Scorer caches one per query text)."""
        return QueryBatch.prepare(self.catalog, self._tokenizer, self._grams, texts)

    def prepared_features(self, batch: QueryBatch, rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """(n_pairs, F) float32 for pairs (batch query groups[j], item row rows[j]); indices are not checked here."""
        parts = [
            pair_features(self.catalog, batch, rows[s : s + CHUNK_PAIRS], groups[s : s + CHUNK_PAIRS])
            for s in range(0, rows.size, CHUNK_PAIRS)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
