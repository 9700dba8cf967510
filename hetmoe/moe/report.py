"""Writing an evaluation: ``report.json`` (stable keys for other tools), ``report.md`` (tables) and ``report.png``.

The PNG has two panels: per-market AUC of every variant (grouped bars) and the MoE router's share of queries per
expert and market (heatmap), the two things a reader needs to judge whether routing helps where it should.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from hetmoe.files import write_json_atomic, write_text_atomic
from hetmoe.moe.compare import comparison_markdown
from hetmoe.moe.guard import guard_markdown
from hetmoe.provenance import made_markdown, synthetic_note


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _clean(obj: Any) -> Any:
    """NaN -> None so report.json is valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def markdown(report: dict[str, Any]) -> str:
    markets = report["markets"]
    variants = report["variants"]
    lines = [
        f"# Evaluation on `{report['split']}` of {report['dataset']}",
        "",
        f"{report['queries']} queries, {report['pairs']} judged pairs, markets: {', '.join(markets)}. "
        f"Training: {report.get('trained_on', {}).get('fit', '?')}; early stopping on "
        f"{report.get('trained_on', {}).get('early_stopping', '?')}. Judge by macro AUC (mean of per-market AUCs); "
        "pooled AUC also rewards learning each market's base rate.",
        "",
        *synthetic_note(report.get("made")),
        "| variant | AUC macro | AUC pooled | " + " | ".join(markets) + " | nDCG@10 | experts/query |",
        "|---|---|---|" + "---|" * len(markets) + "---|---|",
    ]
    if report.get("unseen_markets"):
        how = ("the net variants score them with their transfer heads (raw cosines and scale-free lexical "
               "similarities, learned on the training markets), LightGBM with its trees" if report.get("transfer_head")
               else "the model has no transfer head: every variant scores them as an unknown market")
        lines[4:4] = [f"Markets the model was not fitted on: {', '.join(report['unseen_markets'])}; {how}.", ""]
    for name, v in variants.items():
        per = " | ".join(_fmt(v["auc_by_market"].get(m)) for m in markets)
        lines.append(
            f"| {name} | {_fmt(v['auc_macro'])} | {_fmt(v['auc'])} | {per} | {_fmt(v['ndcg10'])} | {v['experts_per_query']:.2f} |"
        )
    lines += _ranking_table(variants)
    if report.get("k") is not None and report["k"] >= report.get("n_experts", report["k"] + 1):
        lines += [
            "",
            f"**Note: k = {report['k']} is the number of experts, so the MoE routes every query to all of them**: its "
            "top-k keeps every expert and its router only sets the gates (softmax weights), which is the `soft` "
            "variant's architecture; `moe` and `soft` then differ only by training noise and soft's dropping of "
            "low-weight experts. Choose k below the number of experts (`--k`) for routing.",
        ]
    cmp = report.get("moe_vs_best_single")
    if cmp:
        lines += [
            "",
            f"**MoE vs best single expert ({cmp['best_single']})**: macro AUC {cmp['delta_auc_macro']:+.4f} "
            f"(95% CI {cmp['ci95_macro'][0]:+.4f} .. {cmp['ci95_macro'][1]:+.4f}); pooled AUC {cmp['delta_auc']:+.4f} "
            f"(95% CI {cmp['ci95'][0]:+.4f} .. {cmp['ci95'][1]:+.4f}); {cmp['reps']} bootstrap resamples of queries within markets.",
        ]
    lines += comparison_markdown(report)
    if report.get("market_guard"):
        lines += guard_markdown(report["market_guard"])
    moe = variants.get("moe")
    router = report.get("router_expert")  # None: rule routing, a table per market that reads no query vector
    if moe:
        experts = list(moe["routing_share"])
        source = f"`{router}` query vector + market" if router else "the market's row of the rule table"
        lines += [
            "",
            f"## MoE routing: share of queries sent to each expert (router input: {source})",
            "",
            "| market | " + " | ".join(experts) + " |",
            "|---|" + "---|" * len(experts),
        ]
        for m, shares in moe["routing_share_by_market"].items():
            lines.append(f"| {m} | " + " | ".join(f"{shares[e]:.2f}" for e in experts) + " |")
        lines.append("| all | " + " | ".join(f"{moe['routing_share'][e]:.2f}" for e in experts) + " |")
    lines += [
        "",
        "Online query-encoding cost = experts/query (the query is encoded only by its routed experts"
        + (f"; the learned router also needs the `{router}` query vector, the cheapest expert)." if router else ")."),
    ]
    lines += made_markdown(report.get("made"))
    return "\n".join([*lines, ""])


RANKING_COLUMNS = (("mrr", "MRR"), ("recall10", "Recall@10"), ("recall20", "Recall@20"), ("ndcg5", "nDCG@5"),
                   ("ndcg10", "nDCG@10"), ("ndcg20", "nDCG@20"))


def _ranking_table(variants: dict[str, Any]) -> list[str]:
    """Search metrics of every variant that has them: mean over queries, the mean over markets in brackets."""
    rows = {name: v for name, v in variants.items() if "mrr" in v}
    if not rows:
        return []
    lines = ["", "## Search metrics", "",
             "Each query's judged items ranked by the variant's score: mean over queries (mean over markets in "
             "brackets). Recall@k: the share of a query's judged relevant items in its top k judged items, not recall "
             "over the catalog; MRR: 1 / the rank of its first relevant item. `zero-shot:<expert>` ranks by that "
             "expert's raw cosine, untrained.", "",
             "| variant | " + " | ".join(label for _, label in RANKING_COLUMNS) + " |",
             "|---|" + "---|" * len(RANKING_COLUMNS)]
    for name, v in rows.items():
        macro = v.get("ranking_macro", {})
        cells = [f"{_fmt(v[key])} ({_fmt(macro.get(key))})" for key, _ in RANKING_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    markets = report["markets"]
    variants = report["variants"]
    names = list(variants)
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / max(1, len(names))
    x = np.arange(len(markets) + 1)
    for j, name in enumerate(names):
        vals = [variants[name]["auc_by_market"].get(m) or np.nan for m in markets] + [variants[name]["auc_macro"] or np.nan]
        ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=name)
    ax.set_xticks(x, [*markets, "macro"])
    finite = [v for n in names for v in [*variants[n]["auc_by_market"].values(), variants[n]["auc_macro"]] if v is not None and not math.isnan(v)]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.02))
    ax.set_ylabel("AUC")
    ax.set_title(f"Per-market AUC on '{report['split']}'")
    ax.legend(fontsize=7, ncol=2)
    moe = variants.get("moe")
    if moe:
        experts = list(moe["routing_share"])
        grid = np.array([[moe["routing_share_by_market"][m][e] for e in experts] for m in moe["routing_share_by_market"]])
        im = hx.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        hx.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
        hx.set_yticks(range(grid.shape[0]), list(moe["routing_share_by_market"]))
        for (i, j), v in np.ndenumerate(grid):
            hx.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=7)
        hx.set_title("MoE routing share")
        fig.colorbar(im, ax=hx)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_reports(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _clean(report)
    write_json_atomic(out_dir / "report.json", clean, indent=2, sort_keys=False)
    write_text_atomic(out_dir / "report.md", markdown(report))
    chart(report, out_dir / "report.png")
