"""``hetmoe diagnose``: how anisotropic each expert's space is, how the spaces relate, and what fusing them does."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from hetmoe.commands.options import SEED, STORE, example, experts_option


def _summary(result: dict[str, Any]) -> None:
    """One rich table per section on stdout; the full numbers are in diagnose.json."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Anisotropy on {result['n_items']} sampled items")
    for column in ("expert", "dim", "mean cos", "PC1 share", "eff. rank", "eff. rank (centred)", "IsoScore"):
        table.add_column(column, justify="left" if column == "expert" else "right")
    for name, g in sorted(result["experts"].items()):
        table.add_row(name, str(g["dim"]), f"{g['mean_pair_cosine']:.3f}", f"{g['pc1_variance_share']:.3f}",
                      f"{g['effective_rank']:.1f}", f"{g['effective_rank_centered']:.1f}", f"{g['isoscore']:.3f}")
    console.print(table)
    if "fusion" in result:
        fused = result["fusion"]
        table = Table(title=f"Fusion ({fused['basis']})")
        for column in ("fusion", f"{result['k']}-NN kept (mean)", "norm kept", "eff. rank (centred)"):
            table.add_column(column, justify="left" if column == "fusion" else "right")
        for kind in ("average", "concatenation"):
            f = fused[kind]
            table.add_row(kind, f"{f['mean_knn_overlap']:.3f}", f"{f['norm_shrinkage']['mean']:.3f}", f"{f['effective_rank_centered']:.1f}")
        console.print(table)


def diagnose_command(
    store: Path = STORE,
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained net model: fuse its item projections instead of raw vectors."),
    sample: int = typer.Option(5000, "--sample", min=3, help="Items sampled (the same ids for every expert)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: a diagnose/ folder next to STORE)."),
    expert: Optional[list[str]] = experts_option("the model's experts, else every expert in STORE"),
    neighbours: int = typer.Option(10, "--neighbours", min=1, help="Neighbours per item for the kNN overlaps."),
    seed: int = SEED,
) -> None:
    """Report per-expert anisotropy, CKA / kNN overlap between experts, and average-vs-concat fusion geometry."""
    from hetmoe.diagnose.run import diagnose

    out_dir = out if out is not None else store.resolve().parent / "diagnose"
    result = diagnose(store, out_dir, model_dir=model, sample=sample, seed=seed, experts=expert or None, k=neighbours)
    _summary(result)
    typer.echo(f"wrote {', '.join(result['files'])} to {out_dir}")


def register(app: typer.Typer) -> None:
    app.command("diagnose", epilog=example("hetmoe diagnose --store stores --model stores/model"))(diagnose_command)
