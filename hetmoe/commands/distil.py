"""``hetmoe distil``: label pairs with a fitted mixture and train one fast sentence-transformers student on them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from hetmoe.commands.options import (ADDRESS, CARDS, CPUS_PER_WORKER, DATA, ENGINE, GPUS_PER_WORKER, MODEL, RAY_WORKERS,
                                     example, with_options)
from hetmoe.commands.training import train_options, train_params
from hetmoe.experts.train_options import DISTIL_TRAINING


def register(app: typer.Typer) -> None:
    @app.command("distil", epilog=example(
        "hetmoe distil --model stores/model --data data/D --student minilm --cards-out my-cards.toml",
        "hetmoe distil --model stores/model --data data/D --student minilm --pairs-per-query 16 --engine ray"))
    @with_options(train_params(DISTIL_TRAINING))
    def distil_cmd(
        model: Path = MODEL,
        data: Path = DATA,
        student: str = typer.Option(..., "--student", help="Card of the sentence-transformers model to train "
                                    "(packaged, or from --cards)."),
        cards: Path = CARDS,
        name: str = typer.Option(None, "--name", help="New card's name (default: <student>-distil)."),
        out: Path = typer.Option(None, "--out", help="Folder for the student's model, card.toml and distil.json "
                                 "(default: stores/distil/<name>-<fingerprint12>)."),
        cards_out: Path = typer.Option(None, "--cards-out", help="Also add the new card to this TOML file "
                                       "(created if absent)."),
        labels: Path = typer.Option(None, "--labels", help="Folder for the teacher's labels, reused by later students "
                                    "of the same teacher, data and drawing (default: stores/distil/labels-<hash12>)."),
        pairs_per_query: int = typer.Option(8, "--pairs-per-query", help="Unjudged candidates drawn per train query "
                                            "from its routed experts' market indexes, labelled by the teacher."),
        label_weight: float = typer.Option(0.5, "--label-weight", help="Weight of the judged grade in a judged "
                                           "pair's target (the rest is the teacher's score; 0: the teacher alone)."),
        engine: str = ENGINE,
        address: str = ADDRESS,
        ray_workers: int = RAY_WORKERS,
        gpus_per_worker: float = GPUS_PER_WORKER,
        cpus_per_worker: float = CPUS_PER_WORKER,
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder / same-name card."),
        **training: Any,
    ) -> None:
        """Distil a mixture into one student: draw each train query's judged pairs plus hard in-market candidates,
        label them with the mixture (the bulk scoring path; resumable), train the student on the labels (CoSENT,
        early stopping on held-out train queries) and write it as a new expert card; prints the report JSON."""
        from hetmoe.commands.scale import pool_spec
        from hetmoe.experts.card import get_card
        from hetmoe.experts.openmp import short_spin

        with short_spin():  # distil imports torch: its libgomp must load with short spin-waits, as the backend's does
            from hetmoe.experts.distil import DistilOptions, distil

        options = DistilOptions(pairs_per_query, label_weight, engine, train_options(training, name))
        pool = pool_spec(address, ray_workers, gpus_per_worker, cpus_per_worker)
        report = distil(model, data, get_card(student, cards), out, cards_out, labels, options, pool, overwrite)
        typer.echo(json.dumps(report))
