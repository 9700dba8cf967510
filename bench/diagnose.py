"""How long ``hetmoe diagnose`` takes on a large store: a synthetic N-item catalogue written by the real store writer.

Usage: ``python bench/diagnose.py [--items 200000] [--sample 5000] [--dims 384,256,64] [--workdir DIR]``.
The experts are synthetic (a shared 16-d latent per item, an expert-specific linear map, private noise and a common
offset that makes each space anisotropic), because the point is the cost of reading, sampling and measuring, not
the numbers; they go through ``hetmoe.store.embed.embed_dataset`` so the store is exactly what ``hetmoe embed``
writes. Prints one JSON object (also written to bench/results/diagnose.json) and a short table.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

LATENT = 16
RESULTS = Path(__file__).resolve().parent / "results"


class SyntheticEncoder:
    """Deterministic vectors for texts "item <i>": latent z_i mapped by an expert matrix, plus noise and an offset."""

    def __init__(self, dim: int, seed: int, offset: float) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed, self.offset = dim, seed, offset
        self.mixing = rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)
        self.mean = rng.standard_normal(dim) / np.sqrt(dim)

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        index = np.array([int(t.split()[-1]) for t in texts])
        lo = int(index.min())
        span = int(index.max()) - lo + 1
        latent = np.random.default_rng([0, lo, span]).standard_normal((span, LATENT))[index - lo]
        noise = np.random.default_rng([self.seed, lo, span]).standard_normal((span, self.dim))[index - lo]
        vectors = latent @ self.mixing + 0.5 * noise / np.sqrt(self.dim) + self.offset * self.mean
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_dataset(root: Path, n_items: int) -> None:
    """A dataset folder with ``n_items`` items named "item <i>" and a handful of queries and judgments."""
    from hetmoe.data.dataset import write_dataset as write

    ids = [f"i{i}" for i in range(n_items)]
    items = pl.DataFrame({"item_id": ids, "title": [f"item {i}" for i in range(n_items)], "market": ["US"] * n_items})
    splits = ["train", "valid", "test"]
    queries = pl.DataFrame({"query_id": [f"q{j}" for j in range(3)], "text": [f"item {j}" for j in range(3)], "market": ["US"] * 3})
    judgments = pl.DataFrame({"query_id": [f"q{j}" for j in range(3)], "item_id": [f"i{j}" for j in range(3)],
                              "label": [1.0] * 3, "relevant": [1] * 3, "split": splits})
    write(root, items, queries, judgments)


def build_store(workdir: Path, n_items: int, dims: list[int]) -> Path:
    """Write the dataset and one store per synthetic expert (reused when already complete)."""
    from hetmoe.experts.card import ExpertCard
    from hetmoe.store.embed import embed_dataset

    data, store = workdir / "data", workdir / "stores"
    if not (data / "items.parquet").is_file():
        write_dataset(data, n_items)
    for j, dim in enumerate(dims):
        card = ExpertCard(name=f"synth{j}_{dim}d", backend="synthetic", model="synthetic", dim=dim)
        embed_dataset(data, card, store, encoder=SyntheticEncoder(dim, seed=j + 1, offset=0.5 + j), progress=False)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--dims", default="384,256,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the store here (reused if present).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.diagnose.run import diagnose

    dims = [int(d) for d in args.dims.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        began = time.perf_counter()
        store = build_store(workdir, args.items, dims)
        build_s = time.perf_counter() - began
        walls, measured, cpu = [], [], []
        for repeat in range(args.repeats):
            began, began_cpu = time.perf_counter(), time.process_time()
            result = diagnose(store, workdir / "diagnose", sample=args.sample, seed=repeat)
            walls.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
            measured.append(result["seconds"])
    out = {
        "name": "diagnose", "items": args.items, "sample": args.sample, "dims": dims, "repeats": args.repeats,
        "store_build_seconds": round(build_s, 2),
        "diagnose_seconds_median": round(float(np.median(walls)), 3),
        "measure_seconds_median": round(float(np.median(measured)), 3),
        "report_seconds_median": round(float(np.median(np.subtract(walls, measured))), 3),
        "cpu_seconds_median": round(float(np.median(cpu)), 3),  # all threads; a shared machine inflates only wall time
        "mean_knn_overlap": {k: result["fusion"][k]["mean_knn_overlap"] for k in ("average", "concatenation")},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "diagnose.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(f"{'items':>8} {'sample':>7} {'experts':>8} {'diagnose s':>11} {'measure s':>10} {'figures s':>10} {'cpu s':>8}")
    print(f"{args.items:>8} {args.sample:>7} {len(dims):>8} {out['diagnose_seconds_median']:>11} "
          f"{out['measure_seconds_median']:>10} {out['report_seconds_median']:>10} {out['cpu_seconds_median']:>8}")


if __name__ == "__main__":
    main()
