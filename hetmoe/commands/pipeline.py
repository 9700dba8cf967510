"""``hetmoe run`` and ``hetmoe demo``: thin wrappers over :func:`hetmoe.pipeline.run.run_pipeline`."""
from __future__ import annotations

from pathlib import Path

import typer

from hetmoe.data.demo_vocab import ITEMS_PER_MARKET, QUERIES_PER_MARKET
from hetmoe.moe.jobs import WORKERS_HELP
from hetmoe.pipeline.run import run_pipeline


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        data: Path = typer.Option(..., "--data", help="Dataset folder (items/queries/judgments Parquet)."),
        out: Path = typer.Option(..., "--out", help="Writes OUT/stores, OUT/model and OUT/report."),
        experts: list[str] = typer.Option(None, "--expert", "-e", help="Experts to use (repeat); default: the cards file's default set."),
        cards: Path = typer.Option(None, "--cards", help="Expert cards TOML (default: configs/experts.toml or $HETMOE_CARDS)."),
        k: int = typer.Option(2, help="Experts routed per query."),
        seed: int = typer.Option(0, help="Seed for training."),
        router_expert: str = typer.Option(None, "--router-expert", help="Cheap expert whose query vector feeds the router (default: the cards file's [defaults] router_expert)."),
        lexical: str = typer.Option("lexical", "--lexical", help="Lexical expert card fed to every head (BM25, char n-grams, token overlap); 'none' to leave it out."),
        workers: int = typer.Option(0, "--workers", min=0, help=WORKERS_HELP),
    ) -> None:
        """Run the whole pipeline on a dataset folder: embed, index, fit, evaluate (on test, else valid), diagnose."""
        result = run_pipeline(data, out, experts, cards, k, seed, router_expert, None if lexical == "none" else lexical,
                              workers=workers)
        _print_summary(result, out / "report")

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("stores/demo"), "--out", help="Writes OUT/data, OUT/stores, OUT/model, OUT/report."),
        items_per_market: int = typer.Option(ITEMS_PER_MARKET, help="Demo catalog items per market."),
        queries_per_market: int = typer.Option(QUERIES_PER_MARKET, help="Demo queries per market."),
        seed: int = typer.Option(0, help="Seed for the demo data and training."),
        workers: int = typer.Option(0, "--workers", min=0, help=WORKERS_HELP),
    ) -> None:
        """Generate the multilingual demo catalog and run the whole pipeline on it (a few minutes on 2 cores)."""
        from hetmoe.data.demo import generate_demo

        data = out / "data"
        generate_demo(data, items_per_market=items_per_market, queries_per_market=queries_per_market, seed=seed)
        result = run_pipeline(data, out, seed=seed, workers=workers)
        _print_summary(result, out / "report")


def _print_summary(result: dict, report_dir: Path) -> None:
    """Print the per-variant table (macro AUC first: pooled AUC rewards learning each market's base rate)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['dataset']} — split {result['split']}")
    for column in ("variant", "AUC macro", "AUC pooled", "nDCG@10", "experts/query"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, v in result["variants"].items():
        table.add_row(name, f"{v['auc_macro']:.4f}", f"{v['auc']:.4f}", f"{v['ndcg10']:.4f}", f"{v['experts_per_query']:.2f}")
    console = Console()
    console.print(table)
    delta = result["moe_vs_best_single"]
    console.print(
        f"moe vs best single: ΔAUC macro {delta['delta_auc_macro']:+.4f} (95% CI {delta['ci95_macro'][0]:+.4f}..{delta['ci95_macro'][1]:+.4f}), "
        f"pooled {delta['delta_auc']:+.4f} (95% CI {delta['ci95'][0]:+.4f}..{delta['ci95'][1]:+.4f})"
    )
    fused = result.get("moe_vs_weighted")
    if fused:
        console.print(f"moe vs weighted fusion: ΔAUC macro {fused['delta_auc_macro']:+.4f} "
                      f"(95% CI {fused['ci95_macro'][0]:+.4f}..{fused['ci95_macro'][1]:+.4f})")
    console.print(f"report: {report_dir / 'report.md'}")
