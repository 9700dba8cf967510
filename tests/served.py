"""What the Scorer serves for a judged pair set: one request per query with its stored query vectors, the scores put
back in the pair set's order, so that a test compares them with eval's (``score_net``) bit for bit."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def served_scores(model_dir: Path, data_dir: Path, data: Any, judged: Any) -> np.ndarray:
    """(n,) the Scorer's score of each of ``judged``'s pairs (``data``: the dataset behind it)."""
    from hetmoe.online.results import ScoreRequest
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(model_dir, data_dir=data_dir, with_indexes=False)
    texts = dict(zip(data.queries["query_id"].to_list(), data.queries["text"].to_list()))
    markets = np.asarray(judged.markets, dtype=object)[judged.q_market]
    requests, known, order = [], [], []
    for q in range(judged.query_ids.shape[0]):
        at = np.flatnonzero(judged.qi == q)
        requests.append(ScoreRequest(texts[judged.query_ids[q]], judged.item_ids[judged.di[at]].tolist(), str(markets[q])))
        known.append({e: judged.features.batch.query_vecs[e][q] for e in judged.experts})
        order.append(at)
    got = np.concatenate([r.scores for r in scorer.score_batch(requests, known)])
    scorer.close()
    out = np.empty_like(got)
    out[np.concatenate(order)] = got
    return out
