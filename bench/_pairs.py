"""Shared input of the pair-level bench scripts (item neighbourhoods, transfer): the arguments naming a dataset, its
stores and experts, and the train + valid pairs they load (with item neighbourhoods, as the stacked head reads them).

The leading underscore keeps ``bench/run_all.py`` from running this module as a benchmark.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True)
    parser.add_argument("-e", "--experts", required=True)
    parser.add_argument("--lexical", default="lexical", help="lexical store ('' for none)")
    parser.add_argument("--router-expert", default="static")
    parser.add_argument("--out", type=Path, default=None)


def load_bench_pairs(args: argparse.Namespace) -> tuple[list[str], Any]:
    """(experts, PairSet of the train and valid judgments) as the arguments above name them."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.moe.features import load_pairs

    experts = [e for e in args.experts.split(",") if e]
    pairs = load_pairs(check_dataset(args.data), args.stores, experts, ["train", "valid"], args.router_expert,
                       lexical_store=args.lexical or "", neighbourhood=True)
    return experts, pairs
