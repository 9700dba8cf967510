"""The id -> row lookup answers an online request (a few ids: a dict) as it answers a bulk block (binary search)."""
from __future__ import annotations

import numpy as np

from hetmoe.vectors import FEW_IDS, SortedIds


def test_a_few_ids_and_many_find_the_same_first_rows() -> None:
    rng = np.random.default_rng(0)
    ids = np.array([f"p{i}" for i in rng.integers(0, 3000, 5000)])  # about 1,300 ids held more than once
    lookup = SortedIds(ids, probe_few=True)
    wanted = np.array([*ids[rng.choice(ids.size, 300)], "absent", "p-1", ""])
    many = np.concatenate([wanted] * (FEW_IDS // wanted.size + 1))
    assert wanted.size < FEW_IDS <= many.size
    rows, found = lookup.find(wanted)
    bulk_rows, bulk_found = lookup.find(many)
    np.testing.assert_array_equal(found, bulk_found[: wanted.size])
    np.testing.assert_array_equal(rows[found], bulk_rows[: wanted.size][found])
    assert found.sum() == 300 and not found[300:].any()
    first = {w: int(np.flatnonzero(ids == w)[0]) for w in wanted[:300]}
    assert [first[w] for w in wanted[:300]] == rows[:300].tolist()  # a duplicated id answers its first row
