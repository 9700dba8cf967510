"""An exported runtime's vectors inside a fitted model: valid AUC of one model with float32 vectors, with the runtime's
query vectors beside float32 item vectors (serving int8 queries), and with the runtime on both sides.

Usage: ``python bench/runtime_quality.py --data ../shared/data/homedepot --stores stores/hd [--expert minilm]
[--router static] [--runtime onnx-int8] --out bench/results/runtime-quality-homedepot.json``.

Steps, each resumable: float32 stores of ``--expert`` and ``--router`` under ``--stores``; a k=1 model over
``--expert`` (routed by ``--router``) fitted on them (``STORES/runtime-model``); the runtime's card (exported on first
use) stating ``interchangeable_with`` the float32 card, embedded under ``STORES-<runtime>``; a store root whose
``--expert`` items are the float32 store's and queries the runtime's (``STORES-mixed``, symlinks); ``evaluate`` of the
model on the three roots (macro AUC over markets of the ``moe`` variant). The raw-cosine AUC change comes from
``hetmoe experts check --data`` (docs/runtime.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from hetmoe.experts.card import get_card

HERE = Path(__file__).resolve().parent


def mixed_root(float32: Path, runtime: Path, out: Path, expert: str) -> Path:
    """A store root of symlinks: every float32 store, except ``expert``'s queries part, which is the runtime's."""
    for store in float32.iterdir():
        if not store.is_dir() or store.name.startswith(".") or store.name == "runtime-model":
            continue
        for entry in store.iterdir():
            source = runtime / expert / entry.name if (store.name, entry.name) == (expert, "queries.zarr") else entry
            link = out / store.name / entry.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(source.resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True, help="float32 store root (embedded here if missing)")
    parser.add_argument("--expert", default="minilm")
    parser.add_argument("--router", default="static")
    parser.add_argument("--runtime", default="onnx-int8", choices=("onnx", "onnx-int8"))
    parser.add_argument("--split", default="valid")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "runtime-quality.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hetmoe.experts.export import export_expert
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset

    began = time.perf_counter()
    card = get_card(args.expert)
    for name in (args.router, args.expert):
        embed_dataset(args.data, get_card(name), args.stores)
    model = args.stores / "runtime-model"
    if not (model / "config.json").is_file():
        fit(args.data, args.stores, model, [args.expert], k=1, variants=(), router_expert=args.router)
    runtime_card = next(c for c in export_expert(card)["cards"].values() if c.runtime == args.runtime)
    stated = dataclasses.replace(runtime_card, name=args.expert, interchangeable_with=card.hash)
    runtime_root = args.stores.with_name(f"{args.stores.name}-{args.runtime}")
    embed_dataset(args.data, stated, runtime_root)
    router_link = runtime_root / args.router  # the runtime root holds the expert only: the router stays float32
    if not router_link.exists():
        router_link.symlink_to((args.stores / args.router).resolve())
    roots = {"float32": args.stores,
             "runtime_queries": mixed_root(args.stores, runtime_root, args.stores.with_name(f"{args.stores.name}-mixed"),
                                           args.expert),
             "runtime": runtime_root}
    auc = {}
    with tempfile.TemporaryDirectory(prefix="hetmoe-runtime-quality-") as reports:
        for label, root in roots.items():
            report = evaluate(model, args.data, args.split, Path(reports) / label, store_root=root)
            auc[label] = report["variants"]["moe"]["auc_macro"]
    result = {"name": "runtime-quality", "data": str(args.data), "split": args.split, "expert": args.expert,
              "router": args.router, "runtime": args.runtime, "float32_hash": card.hash,
              "runtime_hash": runtime_card.hash, "model_auc_macro": {k: round(v, 5) for k, v in auc.items()},
              "change_pp": {k: round(100 * (v - auc["float32"]), 3) for k, v in auc.items() if k != "float32"},
              "seconds": round(time.perf_counter() - began, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
