"""What carries to a market a head never saw: trees against linear transfer heads over several feature sets.

On a dataset with two or more markets, every head is fit on one market's train pairs (trees: the stacked head's
booster settings, early stopping on 15% of its train queries; linear: :func:`hetmoe.moe.transfer._logistic`, as the
transfer head fits) and scored on every market's valid pairs: the off-diagonal cells are the transfer. Rows:

- ``trees, every feature``: LightGBM over each expert's cos, z, gap and item-neighbourhood features + every lexical one;
- ``transfer head``: :func:`hetmoe.moe.transfer.fit_transfer` itself (its k best experts' raw cosines + TRANSFER_LEXICAL;
  ``transfer_experts`` in the JSON names them per source market);
- ``linear, cosines only`` / ``+ bounded lexical`` / ``+ every lexical feature`` / ``+ item neighbourhoods``: the same
  regression over other sets;
- ``zero-shot <feature>``: one raw feature as the score (no training: the same in every source's column).

Usage: ``python bench/transfer.py --data DATA/multimarket --stores S -e minilm,use,static,wordllama
[--lexical lexical] [--k 2] [--seed 0]`` (prints JSON and a table; ``--out`` writes the JSON).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from _pairs import add_pair_arguments, load_bench_pairs  # bench/_pairs.py (a script's own folder is on sys.path)

# Lexical features in [0, 1], the "bounded" set the transfer head's four were picked from.
BOUNDED = ("bm25_title_norm", "bm25_text_norm", "tfidf_char_cos", "char_coverage", "word_cosine", "jaccard",
           "query_coverage", "idf_coverage", "item_coverage", "bigram_coverage", "substring_coverage", "query_in_title")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_arguments(parser)
    parser.add_argument("--k", type=int, default=2, help="experts the transfer head reads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from hetmoe.moe.transfer import TRANSFER_LEXICAL

    experts, pairs = load_bench_pairs(args)
    if len(pairs.markets) < 2:
        raise SystemExit(f"{args.data}: one market ({pairs.markets[0]}); transfer needs two or more")
    lex = list(pairs.lex_names)
    cos = [pairs.stats[:, i, 0] for i in range(len(experts))]
    nbr = [pairs.nbr[:, i, f] for i in range(len(experts)) for f in range(pairs.nbr.shape[2])]
    lexcols = {name: pairs.lex[:, lex.index(name)] for name in lex}
    sets = {
        "linear, cosines only": cos,
        "linear, cosines + TRANSFER_LEXICAL": cos + [lexcols[f] for f in TRANSFER_LEXICAL],
        "linear, cosines + bounded lexical": cos + [lexcols[f] for f in BOUNDED if f in lexcols],
        "linear, cosines + every lexical feature": cos + list(lexcols.values()),
        "linear, cosines + TRANSFER_LEXICAL + item neighbourhoods": cos + [lexcols[f] for f in TRANSFER_LEXICAL] + nbr,
    }
    trees = np.column_stack([pairs.stats[:, i, j] for i in range(len(experts)) for j in range(3)] + nbr + [pairs.lex])
    rows: dict[str, dict[str, float]] = {}
    chosen: dict[str, list[str]] = {}
    for source in pairs.markets:
        fit_at = (pairs.market_names == source) & (pairs.split == "train")
        rows.setdefault("trees, every feature", {}).update(
            _cells(source, pairs, _trees(trees, pairs, fit_at, args.seed)))
        scores, chosen[source] = _transfer_head(pairs, fit_at, experts, args.k)
        rows.setdefault("transfer head", {}).update(_cells(source, pairs, scores))
        for name, cols in sets.items():
            rows.setdefault(name, {}).update(_cells(source, pairs, _linear(np.column_stack(cols), pairs, fit_at)))
    for name, col in [*((f"zero-shot cos {e}", c) for e, c in zip(experts, cos)),
                      *((f"zero-shot {f}", lexcols[f]) for f in TRANSFER_LEXICAL)]:
        rows[name] = {cell: v for source in pairs.markets for cell, v in _cells(source, pairs, np.nan_to_num(col)).items()}
    result = {"name": "transfer", "data": args.data.name, "experts": experts, "k": args.k, "seed": args.seed,
              "transfer_experts": chosen, "valid_auc": rows}
    print(json.dumps(result))
    cells = list(next(iter(rows.values())))
    print("\n| head | " + " | ".join(cells) + " |\n|---|" + "---|" * len(cells))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row.get(c, float('nan')):.4f}" for c in cells) + " |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


def _cells(source: str, pairs: Any, scores: np.ndarray) -> dict[str, float]:
    """Valid AUC per target market, keyed ``source -> target``."""
    from hetmoe.metrics import auc

    out = {}
    for target in pairs.markets:
        at = (pairs.market_names == target) & (pairs.split == "valid")
        out[f"{source} -> {target}"] = round(float(auc(scores[at], pairs.y[at])), 4)
    return out


def _linear(x: np.ndarray, pairs: Any, fit_at: np.ndarray) -> np.ndarray:
    from hetmoe.moe.transfer import _logistic

    x = np.nan_to_num(x.astype(np.float64))
    mean, std = x[fit_at].mean(0), np.maximum(x[fit_at].std(0), 1e-6)
    beta = _logistic((x[fit_at] - mean) / std, pairs.y[fit_at].astype(np.float64), np.ones(int(fit_at.sum())))
    return (x - mean) / std @ beta[:-1] + beta[-1]


def _transfer_head(pairs: Any, fit_at: np.ndarray, experts: list[str], k: int) -> tuple[np.ndarray, list[str]]:
    """(scores of every pair, the experts the head chose on the source market)."""
    from hetmoe.moe.transfer import fit_transfer

    head = fit_transfer(pairs.subset(fit_at), experts, k)
    cosines = [pairs.stats[:, experts.index(e), 0] for e in head.experts]
    return head.logits(cosines, pairs.lex, pairs.lex_names), list(head.experts)


def _trees(x: np.ndarray, pairs: Any, fit_at: np.ndarray, seed: int) -> np.ndarray:
    import lightgbm as lgb

    from hetmoe.moe.features import carve_by_query
    from hetmoe.moe.stack import EARLY_STOP_ROUNDS, MAX_ROUNDS, PARAMS

    at = np.flatnonzero(fit_at)
    fit_mask, stop_mask = carve_by_query(pairs.subset(fit_at), 0.15, seed)
    fit_rows, stop_rows = at[fit_mask], at[stop_mask]
    x = x.astype(np.float32)
    booster = lgb.train({**PARAMS, "seed": seed}, lgb.Dataset(x[fit_rows], pairs.y[fit_rows]), MAX_ROUNDS,
                        valid_sets=[lgb.Dataset(x[stop_rows], pairs.y[stop_rows])],
                        callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)])
    return booster.predict(x)


if __name__ == "__main__":
    main()
