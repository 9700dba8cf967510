"""Item neighbourhoods: the market indexes and tables kept in the store (stage one) and the per-pair features the
stacked head reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hetmoe.store.market_index as market_module
from hetmoe.online.catalog import ItemCatalog
from hetmoe.pairs.blocks.neighbourhood import EXPANSION, NEIGHBOURHOOD_FEATURES, WIDE_EXPANSION, neighbourhood_features
from hetmoe.pairs.context import FeatureContext
from hetmoe.store.market_index import MarketIndex
from hetmoe.store.neighbourhood import NEIGHBOURS_DIR, market_index
from hetmoe.vectors import l2_normalize


def _catalog(n: int = 40, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, markets, raw vectors a store could hold: float16 values)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"i{j:03d}" for j in range(n)])
    markets = np.array(["A"] * (n - 5) + ["B"] * 4 + ["C"])  # C: one item, no neighbourhood
    return ids, markets, rng.normal(size=(n, dim)).astype(np.float16).astype(np.float32)


def _context(ids: np.ndarray, markets: np.ndarray, raw: np.ndarray, top: int = 6) -> FeatureContext:
    catalog = ItemCatalog(ids, {"e": raw})
    catalog.set_markets(ids, markets)
    return FeatureContext(catalog, None, ref_top=top)


def _clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Product-like vectors: families of near-duplicates around a few hundred centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 20), dim))
    return l2_normalize(centres[rng.integers(0, centres.shape[0], n)] + 0.35 * rng.normal(size=(n, dim)))


def _index(units: np.ndarray, top: int = 6) -> MarketIndex:
    ids = np.array([f"i{j:05d}" for j in range(units.shape[0])])
    return MarketIndex.build(ids, lambda rows: units[rows], units.shape[1], top)


def _brute(units: np.ndarray, top: int) -> np.ndarray:
    sims = units @ units.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :top]


def test_table_is_each_items_best_cosines_in_its_own_market_without_itself() -> None:
    ids, markets, raw = _catalog()
    units = l2_normalize(raw)
    table = _context(ids, markets, raw).neighbours("e")
    sims = units @ units.T
    for j in range(ids.shape[0]):
        others = np.flatnonzero((markets == markets[j]) & (np.arange(ids.shape[0]) != j))
        if others.size == 0:
            assert np.isnan(table.mean[j]) and (table.rows[j] == -1).all()
            continue
        best = others[np.argsort(-sims[j, others], kind="stable")][:16]
        assert set(table.rows[j][table.rows[j] >= 0].tolist()) == set(best.tolist())
        assert table.mean[j] == pytest.approx(sims[j, best].mean(), abs=1e-6)
        assert table.last[j] == pytest.approx(sims[j, best[-1]], abs=1e-6)
        np.testing.assert_allclose(table.cosines[j][: best.size], sims[j, best], atol=1e-6)
        assert (markets[table.rows[j][table.rows[j] >= 0]] == markets[j]).all()
    assert (table.rows[ids.shape[0] - 5 : ids.shape[0] - 1, 3:] == -1).all()  # market B: 3 neighbours each, then -1


def test_an_indexed_market_finds_nearly_every_true_neighbour_and_builds_the_same_graph_every_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    units = _clustered(3000)
    exact = _index(units)
    monkeypatch.setattr(market_module, "EXACT_MAX", 500)
    approx, again = _index(units), _index(units)
    assert exact.exact and not approx.exact
    np.testing.assert_array_equal(approx.table.rows, again.table.rows)  # one-thread build: the same graph
    np.testing.assert_array_equal(approx.table.cosines, again.table.cosines)
    np.testing.assert_array_equal(exact.table.rows, _brute(units, 6))
    recall = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(approx.table.rows, exact.table.rows)])
    assert recall > 0.9
    found = approx.table.rows >= 0  # what the index found carries its exact cosine
    np.testing.assert_allclose(approx.table.cosines[found], np.einsum(
        "nd,nkd->nk", units, units[np.maximum(approx.table.rows, 0)])[found], atol=1e-6)


def test_searching_a_big_market_cell_by_cell_gives_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table's searches run in k-means cell order for cache reuse; each search is independent of the others, so
    the table is the one plain order gives, bit for bit."""
    monkeypatch.setattr(market_module, "EXACT_MAX", 500)
    units = _clustered(3000)
    monkeypatch.setattr(market_module, "ORDER_MIN", 10**9)
    plain = _index(units)
    monkeypatch.setattr(market_module, "ORDER_MIN", 1000)
    monkeypatch.setattr(market_module, "ORDER_CELLS", 16)
    ordered = _index(units)
    np.testing.assert_array_equal(ordered.table.rows, plain.table.rows)
    np.testing.assert_array_equal(ordered.table.cosines, plain.table.cosines)
    np.testing.assert_array_equal(ordered.table.centres, plain.table.centres)


@pytest.mark.parametrize("exact_max", [20_000, 500])
def test_a_query_searched_alone_gets_the_bits_it_gets_among_many(monkeypatch: pytest.MonkeyPatch, exact_max: int) -> None:
    monkeypatch.setattr(market_module, "EXACT_MAX", exact_max)
    units = _clustered(2000)
    index = _index(units)
    queries = l2_normalize(units[:300] + 0.2 * np.random.default_rng(4).normal(size=(300, units.shape[1])))
    many = index.nearest(queries, lambda rows: units[rows], 16)
    alone = [index.nearest(queries[i : i + 1], lambda rows: units[rows], 16) for i in range(300)]
    np.testing.assert_array_equal(many[0], np.concatenate([a[0] for a in alone]))
    np.testing.assert_array_equal(many[1], np.concatenate([a[1] for a in alone]))
    assert np.all(np.diff(many[0], axis=1) <= 0)  # best first


def _view(fingerprint: str, count: int, history: list[dict] | None = None) -> dict:
    return {"card_hash": "card", "input_fingerprint": fingerprint, "count": count, "history": history or []}


@pytest.mark.parametrize("exact_max", [20_000, 300])
def test_the_store_keeps_an_index_grows_it_by_appends_and_rebuilds_it_for_another_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact_max: int) -> None:
    monkeypatch.setattr(market_module, "EXACT_MAX", exact_max)
    units = _clustered(1000)
    ids = np.array([f"i{j:05d}" for j in range(1000)])
    lookup = {i: j for j, i in enumerate(ids.tolist())}

    def units_of(wanted: np.ndarray) -> np.ndarray:
        return units[[lookup[i] for i in wanted.tolist()]]

    first = market_index(tmp_path, "e", "A", ids[:900], units_of, 16, _view("f1", 900), top=6)
    folder = next((tmp_path / "e" / NEIGHBOURS_DIR).iterdir())
    stamp = (folder / "table.npz").stat().st_mtime_ns
    read = market_index(tmp_path, "e", "A", ids[:900][::-1], units_of, 16, _view("f1", 900), top=6)  # any order
    assert (folder / "table.npz").stat().st_mtime_ns == stamp  # read back, not rebuilt
    np.testing.assert_array_equal(read.table.rows, first.table.rows)
    grown = _view("f2", 1000, [{"previous_fingerprint": "f1", "from": 900}])
    appended = market_index(tmp_path, "e", "A", ids, units_of, 16, grown, top=6)
    rebuilt = _index(units, top=6)  # the same ids in the same (sorted) order
    assert len(appended) == 1000 and (appended.ids == rebuilt.ids).all()
    agree = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(appended.table.rows, rebuilt.table.rows)])
    if exact_max > 1000:
        np.testing.assert_array_equal(appended.table.rows, rebuilt.table.rows)  # exact markets: an append is exact
        np.testing.assert_array_equal(appended.table.cosines, rebuilt.table.cosines)
        np.testing.assert_array_equal(appended.table.centres, rebuilt.table.centres)  # the changed rows' too
    assert agree > 0.9
    again = market_index(tmp_path, "e", "A", ids, units_of, 16, grown, top=6)  # the grown index was saved
    np.testing.assert_array_equal(again.table.rows, appended.table.rows)
    other = market_index(tmp_path, "e", "A", ids, units_of, 16, _view("g1", 1000), top=6)  # a rebuilt store
    assert (folder / "table.npz").stat().st_mtime_ns != stamp and len(other) == 1000


def test_a_damaged_index_file_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hetmoe.errors import HetmoeError

    monkeypatch.setattr(market_module, "EXACT_MAX", 300)
    units = _clustered(600)
    ids = np.array([f"i{j:05d}" for j in range(600)])
    market_index(tmp_path, "e", "A", ids, lambda w: units[np.searchsorted(ids, w)], 16, _view("f1", 600), top=6)
    folder = next((tmp_path / "e" / NEIGHBOURS_DIR).iterdir())
    data = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(HetmoeError, match="index.faiss: damaged.*hetmoe neighbours --expert e"):
        market_index(tmp_path, "e", "A", ids, lambda w: units[np.searchsorted(ids, w)], 16, _view("f1", 600), top=6)


def _best_rows(ctx: FeatureContext, queries: np.ndarray, markets: list[str], top: int) -> np.ndarray:
    return ctx.reference.rows("e", [(f"q{i}", m) for i, m in enumerate(markets)], queries)[1]


def test_reference_rows_name_the_items_of_the_cosines_in_market() -> None:
    ids, markets, raw = _catalog()
    units = l2_normalize(raw)
    queries = l2_normalize(np.random.default_rng(3).normal(size=(4, units.shape[1])))
    cos, rows = _context(ids, markets, raw).reference.rows("e", [("a", "A"), ("b", "B"), ("c", "A"), ("d", "C")],
                                                               queries)
    assert (rows[1, 4:] == -1).all() and (rows[3, 1:] == -1).all()  # B has 4 items, C one
    assert (cos[1, 4:] == cos[1, 3]).all()  # a short market repeats its lowest cosine
    valid = rows >= 0
    np.testing.assert_allclose(np.einsum("nd,nkd->nk", queries, units[np.maximum(rows, 0)])[valid], cos[valid], atol=1e-6)
    assert (markets[rows[0]] == "A").all() and (markets[rows[1, :4]] == "B").all()


def test_pair_features_of_several_queries_equal_each_query_alone() -> None:
    """Pairs of interleaved queries (the training path: groups = query rows) get what each query's list gets alone."""
    ids, markets, raw = _catalog()
    units = l2_normalize(raw)
    ctx = _context(ids, markets, raw)
    table = ctx.neighbours("e")
    queries = l2_normalize(np.stack([units[0] + 0.3 * units[1], units[5] - 0.2 * units[3]]))
    best = _best_rows(ctx, queries, ["A", "A"], 6)
    items, groups = np.array([0, 2, 7, 0, 3, 36]), np.array([0, 1, 0, 1, 1, 0])
    cos = np.einsum("nd,nd->n", queries[groups], units[items])
    together = neighbourhood_features(cos, queries, units[items], items, best, groups, table, units.__getitem__)
    assert not np.allclose(together[0, 7:], together[3, 7:])  # the same item under two queries differs
    for g in (0, 1):
        at = groups == g
        alone = neighbourhood_features(cos[at], queries[g : g + 1], units[items[at]], items[at], best[g : g + 1],
                                       np.zeros(int(at.sum()), np.int64), table, units.__getitem__)
        np.testing.assert_allclose(together[at], alone, rtol=0, atol=1e-6, equal_nan=True)


def test_pair_features_against_direct_computation() -> None:
    ids, markets, raw = _catalog()
    units = l2_normalize(raw)
    ctx = _context(ids, markets, raw)
    table = ctx.neighbours("e")
    query = l2_normalize(units[0] + 0.3 * units[1])
    best = _best_rows(ctx, query[None], ["A"], 6)
    items = np.array([0, 2, 36, 39])  # two of market A, one of B, the lone item of C
    q_units = np.repeat(query[None], items.size, axis=0)
    cos = q_units @ units.T
    cos = cos[np.arange(items.size), items]
    got = neighbourhood_features(cos, query[None], units[items], items, best, np.zeros(items.size, np.int64), table,
                                 units.__getitem__)
    assert got.shape == (items.size, len(NEIGHBOURHOOD_FEATURES))
    f = {name: got[:, i] for i, name in enumerate(NEIGHBOURHOOD_FEATURES)}
    for n, j in enumerate(items[:3]):
        mine = table.rows[j][table.rows[j] >= 0]
        mine_cos = units[mine] @ units[j]
        assert f["cos_minus_item_mean"][n] == pytest.approx(cos[n] - mine_cos.mean(), abs=1e-6)
        assert f["item_mean"][n] == pytest.approx(mine_cos.mean(), abs=1e-6)
        assert f["cos_minus_item_last"][n] == pytest.approx(cos[n] - mine_cos.min(), abs=1e-6)
        assert f["cos_minus_item_first"][n] == pytest.approx(cos[n] - mine_cos.max(), abs=1e-6)
        assert f["closer_neighbours"][n] == (mine_cos > cos[n]).sum()
        ranked = best[0].tolist()
        assert f["rank_in_query"][n] == (ranked.index(j) if j in ranked else 6)
        assert f["shared_neighbours"][n] == pytest.approx(len(set(mine.tolist()) & set(ranked)) / table.rows.shape[1])
        # the item's expansion centre is stored in float16: the same mean cosine to about 1e-3
        assert f["item_expansion"][n] == pytest.approx(float((units[mine[:EXPANSION]] @ query).mean()), abs=2e-3)
        assert f["query_expansion"][n] == pytest.approx(float((units[best[0, :EXPANSION]] @ units[j]).mean()), abs=1e-6)
        # a query list shorter than WIDE_EXPANSION (6 here) is averaged whole
        assert f["wide_query_expansion"][n] == pytest.approx(float((units[best[0]] @ units[j]).mean()), abs=1e-6)
    assert f["rank_in_query"][0] == 0 and f["rank_in_query"][2] == 6  # item 0 is the query's best; 36 is not in A
    assert np.isnan(got[3, [0, 1, 2, 3, 4, 6, 7]]).all()  # the lone item has no neighbourhood
    assert not np.isnan(got[3, 8])  # but the query's own best items still exist
    wide_best = _best_rows(_context(ids, markets, raw, top=16), query[None], ["A"], 16)
    wide = neighbourhood_features(cos[:1], query[None], units[items[:1]], items[:1], wide_best, np.zeros(1, np.int64),
                                  table, units.__getitem__)
    want = float((units[wide_best[0, :WIDE_EXPANSION]] @ units[0]).mean())
    assert wide[0, -1] == pytest.approx(want, abs=1e-6)
