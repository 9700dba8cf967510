"""Writing a diagnosis: diagnose.json (every number), diagnose.md (the short reading) and PNG figures.

Figures are for people: singular-value spectra per expert, heatmaps of how the experts' spaces relate, and bars of
how much of each expert's neighbourhood survives the average versus the concatenation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SPECTRA_PNG, SIMILARITY_PNG, FUSION_PNG = "spectra.png", "similarity.png", "fusion.png"
AVERAGE_COLOR, CONCAT_COLOR = "#d9822b", "#2b6cb0"


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure rendered by Agg, without pyplot: no global backend switch, nothing left open."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_spectra(result: dict[str, Any], path: Path) -> None:
    """Left: singular values of the unit rows relative to the largest; right: cumulative PCA variance."""
    fig = _figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    for name, geo in sorted(result["experts"].items()):
        s = np.asarray(geo["spectrum"])
        left.loglog(np.arange(1, len(s) + 1), s, label=f"{name} (d={geo['dim']}, mean cos {geo['mean_pair_cosine']:.2f})")
        share = np.cumsum(geo["pca_variance_share"])
        right.semilogx(np.arange(1, len(share) + 1), share, label=f"{name} (eff. rank {geo['effective_rank_centered']:.0f})")
    left.set(title="Singular-value spectrum (uncentred, unit rows)", xlabel="component", ylabel="σᵢ / σ₁")
    right.set(title="Cumulative variance explained (centred PCA)", xlabel="principal components", ylabel="share of variance", ylim=(0, 1.02))
    right.axhline(0.9, color="grey", lw=0.8, ls=":")
    for ax in (left, right):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Per-expert geometry on {result['n_items']} sampled items: a steep first drop on the left = a shared direction (anisotropy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _heatmap(ax: Any, matrix: np.ndarray, names: list[str], title: str, vmax: float) -> Any:
    image = ax.imshow(matrix, vmin=0.0, vmax=vmax, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=9, color="white" if matrix[i, j] < 0.6 * vmax else "black")
    ax.set_title(title, fontsize=10)
    return image


def plot_similarity(result: dict[str, Any], path: Path) -> None:
    """Linear CKA and kNN overlap between every pair of experts, as two annotated heatmaps."""
    pair = result["pairwise"]
    names = pair["experts"]
    side = 2.2 + 0.75 * len(names)
    fig = _figure(2 * side + 1.5, side)
    left, right = fig.subplots(1, 2)
    fig.colorbar(_heatmap(left, np.asarray(pair["linear_cka"]), names, "Linear CKA (1 = same geometry)", 1.0), ax=left, shrink=0.8)
    off = np.asarray(pair["knn_overlap"]) - np.eye(len(names))
    vmax = max(float(off.max()), result["knn_chance_overlap"] * 2, 0.05)
    title = f"Shared {result['k']}-nearest neighbours (chance {result['knn_chance_overlap']:.3f})"
    fig.colorbar(_heatmap(right, np.asarray(pair["knn_overlap"]), names, title, vmax), ax=right, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _reference(ax: Any, y: float, label: str, where: float = 0.5) -> None:
    """A dotted horizontal reference line labelled just above it at ``where`` (axes fraction), in front of the bars."""
    ax.axhline(y, color="black", ls=":", lw=1, zorder=3)
    ax.annotate(label, (where, y), xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points",
                ha="center", va="bottom", fontsize=8, zorder=4, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def plot_fusion(result: dict[str, Any], path: Path) -> None:
    """kNN overlap bars (average vs concatenation) per expert, effective rank, and norm shrinkage."""
    fused = result["fusion"]
    names = sorted(fused["average"]["knn_overlap"])
    x = np.arange(len(names))
    fig = _figure(13, 4.2)
    bars, rank, norms = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    width = 0.38
    for offset, kind, color in ((-width / 2, "average", AVERAGE_COLOR), (width / 2, "concatenation", CONCAT_COLOR)):
        values = [fused[kind]["knn_overlap"][n] for n in names]
        drawn = bars.bar(x + offset, values, width, color=color, label=kind)
        bars.bar_label(drawn, fmt="%.2f", fontsize=8, label_type="center", color="white")
    if "projection_knn_overlap" in fused:
        proj = [fused["projection_knn_overlap"][n] for n in names]
        bars.scatter(x, proj, marker="_", s=900, color="black", zorder=3, label="projection alone")
    bars.axhline(result["knn_chance_overlap"], color="grey", ls=":", lw=1, label="chance")
    bars.set_xticks(x, names, rotation=20)
    bars.set(ylim=(0, 1.05), ylabel=f"share of the expert's own {result['k']}-NN kept", title="Neighbourhoods kept after fusion")
    bars.legend(fontsize=8, loc="upper right")
    kinds = ("average", "concatenation")
    colors = (AVERAGE_COLOR, CONCAT_COLOR)
    drawn = rank.bar(kinds, [fused[k]["effective_rank_centered"] for k in kinds], color=colors)
    rank.bar_label(drawn, fmt="%.0f", fontsize=9)
    best = max(g["effective_rank_centered"] for g in result["experts"].values())
    _reference(rank, best, f"best single expert ({best:.0f})")
    rank.set(title="Effective rank (centred)", ylabel="dimensions in use", ylim=(0, 1.15 * max(best, *[fused[k]["effective_rank_centered"] for k in kinds])))
    shrink = [fused[k]["norm_shrinkage"] for k in kinds]
    lower = [s["p50"] - s["p10"] for s in shrink]
    upper = [s["p90"] - s["p50"] for s in shrink]
    norms.bar(kinds, [s["p50"] for s in shrink], color=colors, yerr=[lower, upper], capsize=6)
    unrelated = 1.0 / np.sqrt(len(names))
    _reference(norms, unrelated, f"unrelated experts (1/√{len(names)})", where=0.75)
    norms.set(ylim=(0, 1.15), title="Norm kept (median, 10–90%)", ylabel="‖fused‖ / norm if experts agreed")
    fig.suptitle(f"Average vs concatenation of {len(names)} experts ({fused['basis']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _fmt_row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_fmt_row(header), "|" + "---|" * len(header), *(_fmt_row(r) for r in rows)]


def markdown(result: dict[str, Any]) -> str:
    """The short human reading of a diagnosis; every number here is also in diagnose.json."""
    lines = [
        "# hetmoe diagnose",
        "",
        f"Store `{result['store']}`: {result['n_items']} items shared by every expert (sample seed {result['sample_seed']}), "
        f"k = {result['k']} nearest neighbours among them, compared for {result['knn_queries']} items "
        f"(chance overlap {result['knn_chance_overlap']:.3f}); measured in {result['seconds']:.1f} s.",
        "",
        "## Anisotropy per expert",
        "",
        "Mean cosine near 0, effective rank near the dimension and IsoScore near 1 mean an isotropic space; "
        "mean cosine near 1 or a large PC1 share mean the vectors crowd into a cone.",
        "",
    ]
    header = ["expert", "dim", "mean cos", "PC1 share", "PC10 share", "eff. rank", "eff. rank (centred)", "IsoScore"]
    rows = [
        [n, g["dim"], g["mean_pair_cosine"], g["pc1_variance_share"], g["pc10_variance_share"], f"{g['effective_rank']:.1f}",
         f"{g['effective_rank_centered']:.1f}", g["isoscore"]]
        for n, g in sorted(result["experts"].items())
    ]
    lines += _table(header, rows) + [""]
    narrow = [n for n, g in sorted(result["experts"].items()) if g["dim"] >= result["n_items"]]
    if narrow:
        lines += [f"Note: {', '.join(narrow)} {'has' if len(narrow) == 1 else 'have'} at least as many dimensions as "
                  "sampled items, so spectra, effective ranks and IsoScore are capped by the sample; use a larger --sample.", ""]
    lines += [f"![spectra]({SPECTRA_PNG})", ""]
    pair = result["pairwise"]
    names = pair["experts"]
    if len(names) > 1:
        lines += ["## How the experts relate", "", "Linear CKA (1 = the same geometry up to rotation and scale):", ""]
        lines += _table(["", *names], [[a, *row] for a, row in zip(names, pair["linear_cka"])])
        lines += ["", f"Share of {result['k']}-nearest neighbours in common:", ""]
        lines += _table(["", *names], [[a, *row] for a, row in zip(names, pair["knn_overlap"])])
        lines += ["", f"![similarity]({SIMILARITY_PNG})", ""]
    if "fusion" in result:
        lines += _fusion_markdown(result)
    return "\n".join(lines) + "\n"


def _fusion_markdown(result: dict[str, Any]) -> list[str]:
    fused = result["fusion"]
    names = sorted(fused["average"]["knn_overlap"])
    lines = ["## What fusion does", "", f"Fused: {fused['basis']}; weights {fused['weights']}.", ""]
    header = ["fusion", *[f"kNN kept: {n}" for n in names], "mean", "norm kept (p10–p90)", "eff. rank (centred)", "width"]
    rows = []
    for kind in ("average", "concatenation"):
        f = fused[kind]
        s = f["norm_shrinkage"]
        rows.append([kind, *[f["knn_overlap"][n] for n in names], f["mean_knn_overlap"],
                     f"{s['mean']:.2f} ({s['p10']:.2f}–{s['p90']:.2f})", f"{f['effective_rank_centered']:.1f}", f["width"]])
    if "projection_knn_overlap" in fused:
        proj = fused["projection_knn_overlap"]
        rows.append(["projection alone", *[proj[n] for n in names], float(np.mean(list(proj.values()))), "", "", ""])
    lines += _table(header, rows)
    avg, cat = fused["average"], fused["concatenation"]
    lines += [
        "",
        f"Concatenation keeps {cat['mean_knn_overlap']:.0%} of each expert's neighbours on average, the average "
        f"{avg['mean_knn_overlap']:.0%}; averaging keeps {avg['norm_shrinkage']['mean']:.0%} of the norm "
        f"(unrelated experts would give {1 / np.sqrt(len(names)):.0%}) and {avg['effective_rank_centered']:.0f} effective "
        f"dimensions against {cat['effective_rank_centered']:.0f} for the concatenation.",
        "",
        f"![fusion]({FUSION_PNG})",
    ]
    return lines


def write_report(result: dict[str, Any], out_dir: Path) -> list[str]:
    """Write figures, diagnose.md and diagnose.json into ``out_dir``; returns the file names written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [SPECTRA_PNG]
    plot_spectra(result, out_dir / SPECTRA_PNG)
    if len(result["pairwise"]["experts"]) > 1:
        plot_similarity(result, out_dir / SIMILARITY_PNG)
        files.append(SIMILARITY_PNG)
    if "fusion" in result:
        plot_fusion(result, out_dir / FUSION_PNG)
        files.append(FUSION_PNG)
    files += ["diagnose.md", "diagnose.json"]
    (out_dir / "diagnose.md").write_text(markdown(result), encoding="utf-8")
    (out_dir / "diagnose.json").write_text(json.dumps({**result, "files": files}, indent=1), encoding="utf-8")
    return files
