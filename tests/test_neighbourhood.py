"""Item neighbourhoods: the stored table (stage one) and the per-pair features the stacked head reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hetmoe.pairs.blocks.neighbourhood import EXPANSION, NEIGHBOURHOOD_FEATURES, WIDE_EXPANSION, neighbourhood_features
from hetmoe.moe.reference import market_top_cosines, top_matches
from hetmoe.store.neighbourhood import NEIGHBOURS_DIR, build_neighbours, item_neighbours
from hetmoe.vectors import l2_normalize


def _catalog(n: int = 40, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"i{j:03d}" for j in range(n)])
    markets = np.array(["A"] * (n - 5) + ["B"] * 4 + ["C"])  # C: one item, no neighbourhood
    return ids, markets, l2_normalize(rng.normal(size=(n, dim)))


def test_table_is_each_items_best_cosines_in_its_own_market_without_itself() -> None:
    ids, markets, units = _catalog()
    table = build_neighbours(ids, markets, units, top=6)
    sims = units @ units.T
    for j in range(ids.shape[0]):
        others = np.flatnonzero((markets == markets[j]) & (np.arange(ids.shape[0]) != j))
        if others.size == 0:
            assert np.isnan(table.mean[j]) and (table.rows[j] == -1).all()
            continue
        best = others[np.argsort(-sims[j, others], kind="stable")][:6]
        assert set(table.rows[j][table.rows[j] >= 0].tolist()) == set(best.tolist())
        assert table.mean[j] == pytest.approx(sims[j, best].mean(), abs=1e-6)
        assert table.last[j] == pytest.approx(sims[j, best[-1]], abs=1e-6)
        np.testing.assert_allclose(table.cosines[j][: best.size], sims[j, best], atol=1e-6)
        assert (markets[table.rows[j][table.rows[j] >= 0]] == markets[j]).all()
    assert (table.rows[ids.shape[0] - 5 : ids.shape[0] - 1, 3:] == -1).all()  # market B: 3 neighbours each, then -1


def test_table_does_not_depend_on_how_many_items_each_matrix_product_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    import hetmoe.store.neighbourhood as module

    ids, markets, units = _catalog()
    whole = build_neighbours(ids, markets, units, top=6)
    monkeypatch.setattr(module, "BLOCK_CELLS", 80)  # 2 items per product in market A
    blocked = build_neighbours(ids, markets, units, top=6)
    np.testing.assert_array_equal(whole.rows, blocked.rows)
    np.testing.assert_array_equal(whole.cosines, blocked.cosines)  # recomputed pair by pair: the same bits


def test_store_keeps_one_table_per_catalog_and_rebuilds_when_the_catalog_changes(tmp_path: Path) -> None:
    ids, markets, units = _catalog()
    shuffled = np.random.default_rng(1).permutation(ids.shape[0])
    first = item_neighbours(tmp_path, "e", ids, markets, units, top=5)
    again = item_neighbours(tmp_path, "e", ids[shuffled], markets[shuffled], units[shuffled], top=5)  # any order
    folder = tmp_path / "e" / NEIGHBOURS_DIR
    assert len(list(folder.iterdir())) == 1  # the second call read the file (same key), nothing half-written left
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.mean, again.mean)
    moved = units.copy()
    moved[0] = l2_normalize(moved[0] + 1.0)
    item_neighbours(tmp_path, "e", ids, markets, moved, top=5)  # re-embedded item: another table
    markets_changed = markets.copy()
    markets_changed[0] = "B"
    item_neighbours(tmp_path, "e", ids, markets_changed, units, top=5)  # another market map: another table
    assert len(list(folder.iterdir())) == 3


def test_aligned_table_follows_the_host_order_and_marks_items_it_lacks() -> None:
    ids, markets, units = _catalog()
    table = build_neighbours(ids, markets, units, top=4)
    host = np.array(["zz_new", *ids[::-1].tolist()])
    aligned = table.aligned(host)
    assert np.isnan(aligned.mean[0]) and (aligned.rows[0] == -1).all()
    for h in range(1, host.shape[0]):
        j = ids.tolist().index(host[h])
        assert aligned.mean[h] == table.mean[j] or (np.isnan(aligned.mean[h]) and np.isnan(table.mean[j]))
        np.testing.assert_array_equal(np.where(table.rows[j] >= 0, host[aligned.rows[h]], "-"),
                                      np.where(table.rows[j] >= 0, ids[table.rows[j]], "-"))


def test_top_matches_rows_name_the_items_of_the_cosines_in_market() -> None:
    ids, markets, units = _catalog()
    queries = l2_normalize(np.random.default_rng(3).normal(size=(5, units.shape[1])))
    cos, rows = market_top_cosines(queries, np.array(["A", "B", "A", "C", "Z"]), units, markets, 6)
    assert (rows[1, 4:] == -1).all() and (rows[3, 1:] == -1).all()  # B has 4 items, C one
    valid = rows >= 0
    np.testing.assert_allclose(np.einsum("nd,nkd->nk", queries, units[np.maximum(rows, 0)])[valid], cos[valid], atol=1e-6)
    assert (markets[rows[0]] == "A").all() and (markets[rows[1, :4]] == "B").all()
    assert set(rows[4].tolist()) == set(np.argsort(-(queries[4] @ units.T))[:6].tolist())  # unknown market: all items
    tied = np.repeat(units[:1], 3, axis=0)  # equal cosines come back by row
    assert top_matches(units[:1], tied, 3)[1].tolist() == [[0, 1, 2]]


def test_pair_features_of_several_queries_equal_each_query_alone() -> None:
    """Pairs of interleaved queries (the training path: groups = query rows) get what each query's list gets alone."""
    ids, markets, units = _catalog()
    table = build_neighbours(ids, markets, units, top=6)
    queries = l2_normalize(np.stack([units[0] + 0.3 * units[1], units[5] - 0.2 * units[3]]))
    _, best = market_top_cosines(queries, np.array(["A", "A"]), units, markets, 6)
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
    ids, markets, units = _catalog()
    table = build_neighbours(ids, markets, units, top=6)
    query = l2_normalize(units[0] + 0.3 * units[1])
    _, best = market_top_cosines(query[None], np.array(["A"]), units, markets, 6)
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
        assert f["shared_neighbours"][n] == pytest.approx(len(set(mine.tolist()) & set(ranked)) / 6)
        assert f["item_expansion"][n] == pytest.approx(float((units[mine[:EXPANSION]] @ query).mean()), abs=1e-6)
        assert f["query_expansion"][n] == pytest.approx(float((units[best[0, :EXPANSION]] @ units[j]).mean()), abs=1e-6)
        # a query list shorter than WIDE_EXPANSION (6 here) is averaged whole
        assert f["wide_query_expansion"][n] == pytest.approx(float((units[best[0]] @ units[j]).mean()), abs=1e-6)
    assert f["rank_in_query"][0] == 0 and f["rank_in_query"][2] == 6  # item 0 is the query's best; 36 is not in A
    assert np.isnan(got[3, [0, 1, 2, 3, 4, 6, 7]]).all()  # the lone item has no neighbourhood
    assert not np.isnan(got[3, 8])  # but the query's own best items still exist
    wide = neighbourhood_features(cos[:1], query[None], units[items[:1]], items[:1], market_top_cosines(
        query[None], np.array(["A"]), units, markets, 16)[1], np.zeros(1, np.int64), table, units.__getitem__)
    want = float((units[market_top_cosines(query[None], np.array(["A"]), units, markets, 16)[1][0, :WIDE_EXPANSION]] @ units[0]).mean())
    assert wide[0, -1] == pytest.approx(want, abs=1e-6)
