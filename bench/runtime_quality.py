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
of the model on the three roots (macro AUC over markets of the ``moe`` variant, and of ``single:<expert>`` where the
model has it). The raw-cosine AUC change comes from ``hetmoe experts check --data`` (docs/runtime.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from hetmoe.experts.card import get_card

HERE = Path(__file__).resolve().parent


def linked_root(float32: Path, out: Path, expert: str, sources: dict[str, Path]) -> Path:
    """A store root of symlinks to every float32 store, where ``expert``'s parts come from ``sources`` (part ->
    store folder) and its manifest from the items' source (a mixed store is a bench-only thing: its manifest names
    the items' card); its caches derived from vectors (neighbours, FAISS index) are left out, to be rebuilt."""
    if out.exists():
        shutil.rmtree(out)
    for store in float32.iterdir():
        if not store.is_dir() or store.name.startswith(".") or store.name == "runtime-model":
            continue
        if store.name != expert:
            (out / store.name).parent.mkdir(parents=True, exist_ok=True)
            (out / store.name).symlink_to(store.resolve())
            continue
        (out / expert).mkdir(parents=True)
        shutil.copyfile(sources["items"] / "manifest.json", out / expert / "manifest.json")
        for part, source in sources.items():
            for name in (f"{part}.zarr", f"{part}.zarr.done"):
                (out / expert / name).symlink_to((source / name).resolve())
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
                                            {"items": float32_store, "queries": own}),
             "runtime": linked_root(stores, stores.with_name(f"{stores.name}-{args.runtime}-all"), args.expert,
                                    {"items": own, "queries": own})}
    auc = {}
    with tempfile.TemporaryDirectory(prefix="hetmoe-runtime-quality-") as reports:
        for label, root in roots.items():
            report = evaluate(model, args.data, args.split, Path(reports) / label, store_root=root)
            auc[label] = {v: round(report["variants"][v]["auc_macro"], 5)
                          for v in ("moe", f"single:{args.expert}") if v in report["variants"]}
    result = {"name": "runtime-quality", "data": args.data.name, "split": args.split, "expert": args.expert,
              "model": str(model), "router": args.router if args.model is None else None, "runtime": args.runtime, "float32_hash": card.hash,
              "runtime_hash": runtime_card.hash, "model_auc_macro": auc,
              "change_pp": {k: {v: round(100 * (a - auc["float32"][v]), 3) for v, a in by.items()}
                            for k, by in auc.items() if k != "float32"},
              "seconds": round(time.perf_counter() - began, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
