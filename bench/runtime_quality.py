"""An exported runtime's vectors inside a fitted model: valid AUC of one model with float32 vectors, with the runtime's
query vectors beside float32 item vectors (serving int8 queries), and with the runtime on both sides.

Usage: ``python bench/runtime_quality.py --data ../shared/data/homedepot --stores stores/hd [--expert minilm]
[--router static] [--runtime onnx-int8] --out bench/results/runtime-quality-homedepot.json``, or on a fitted model
``python bench/runtime_quality.py --data stores/demo/data --model stores/demo/model --out
bench/results/runtime-quality-demo.json``.

Steps, each resumable: float32 stores of ``--expert`` and ``--router`` under ``--stores``; a k=1 model over
``--expert`` (routed by ``--router``) fitted on them (``STORES/runtime-model``), unless ``--model`` names one; the
runtime's card (exported on first use) stating ``interchangeable_with`` the float32 card, embedded under
``STORES-<runtime>``; store roots of symlinks whose ``--expert`` items are the float32 store's and queries the
runtime's (``STORES-mixed``) or both the runtime's (``STORES-<runtime>-all``), the other experts float32; ``evaluate``
of the model on the three roots (macro AUC over markets of the ``moe`` variant). The raw-cosine AUC change comes from
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


def linked_root(float32: Path, out: Path, expert: str, sources: dict[str, Path]) -> Path:
    """A store root of symlinks to every float32 store, where ``expert``'s parts come from ``sources`` (part file name
    -> store folder) and its other files (caches derived from its vectors) are left to be rebuilt."""
    for store in float32.iterdir():
        if not store.is_dir() or store.name.startswith(".") or store.name == "runtime-model":
            continue
        for entry in store.iterdir():
            if store.name == expert and entry.name not in sources:
                continue
            source = sources[entry.name] / entry.name if store.name == expert else entry
            link = out / store.name / entry.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(source.resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, default=None, help="float32 store root (embedded here if missing)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a fitted model to measure (its stores, e.g. stores/demo/model) instead of fitting one")
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
    if args.model is not None:
        from hetmoe.moe.artifacts import read_config

        model, stores = args.model, Path(read_config(args.model)["store_root"])
    else:
        model, stores = args.stores / "runtime-model", args.stores
        for name in (args.router, args.expert):
            embed_dataset(args.data, get_card(name), stores)
        if not (model / "config.json").is_file():
            fit(args.data, stores, model, [args.expert], k=1, variants=(), router_expert=args.router)
    runtime_card = next(c for c in export_expert(card)["cards"].values() if c.runtime == args.runtime)
    stated = dataclasses.replace(runtime_card, name=args.expert, interchangeable_with=card.hash)
    runtime_store = stores.with_name(f"{stores.name}-{args.runtime}")
    embed_dataset(args.data, stated, runtime_store)
    float32_store, own = stores / args.expert, runtime_store / args.expert
    roots = {"float32": stores,
             "runtime_queries": linked_root(stores, stores.with_name(f"{stores.name}-mixed"), args.expert,
                                            {"items.zarr": float32_store, "queries.zarr": own}),
             "runtime": linked_root(stores, stores.with_name(f"{stores.name}-{args.runtime}-all"), args.expert,
                                    {"items.zarr": own, "queries.zarr": own})}
    auc = {}
    with tempfile.TemporaryDirectory(prefix="hetmoe-runtime-quality-") as reports:
        for label, root in roots.items():
            report = evaluate(model, args.data, args.split, Path(reports) / label, store_root=root)
            auc[label] = report["variants"]["moe"]["auc_macro"]
    result = {"name": "runtime-quality", "data": str(args.data), "split": args.split, "expert": args.expert,
              "model": str(model), "router": args.router if args.model is None else None, "runtime": args.runtime, "float32_hash": card.hash,
              "runtime_hash": runtime_card.hash, "model_auc_macro": {k: round(v, 5) for k, v in auc.items()},
              "change_pp": {k: round(100 * (v - auc["float32"]), 3) for k, v in auc.items() if k != "float32"},
              "seconds": round(time.perf_counter() - began, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
