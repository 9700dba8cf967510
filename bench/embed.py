"""What the store costs: ``embed_dataset`` throughput vs the backend's raw encode, and peak memory vs catalog size.

Usage: ``python bench/embed.py [--experts minilm,static] [--items 2000] [--min-seconds 5] [--repeats 4]
[--budget-seconds 60] [--memory-items 50000,200000] [--chunk-size N]``.

Throughput: per expert (default: the cards file's default set), on the same synthetic product catalog (unique titles,
100 queries), the raw backend call ``encoder.encode(all item texts) + encode(all queries)`` against a full
``embed_dataset`` into a fresh store (dataset validation, fingerprint, dedup, float16, Zarr writes, chunk markers,
manifest), both with the same already-loaded encoder; the catalog grows until the raw call takes ``--min-seconds``.
ratio = best raw seconds / best embed seconds over the interleaved rounds, whose order alternates (target >= 0.95);
ratio_paired_median, the median of each round's raw/embed, is the same figure less swayed by one lucky run on a noisy
machine; cpu_ratio_paired_median is that median for the process's CPU seconds (every thread's, the writer's included),
which a descheduled virtual CPU does not inflate.
outside_encode_share_median: per round, the share of embed's wall time outside the chunks' own timings (each chunk
marker's encode + float16 + write seconds): reading, validation, fingerprint, store creation, manifest. Median over
rounds; measured within one run, so immune to run-to-run noise. The chunk writes themselves run on a writer thread
beside the next chunk's encode, so their cost shows only in the ratio (on 2 cores they slow the encoder a little).
Memory: peak RSS of a ``hetmoe embed --expert static`` process per catalog size, next to a process that only loads the
model and the dataset (the floor).
Prints one JSON object (also written to bench/results/embed.json) and a short table.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.experts.card import default_router_expert
from _tables import print_table, publish  # bench/_tables.py (a script's own folder is on sys.path)

BRANDS = "Makita DeWalt Bosch Ryobi Philips Xiaomi Samsung Anker Ikea Uniqlo Adidas Nike Eiger Polytron Miyako Cosmos".split()
ADJECTIVES = "cordless compact heavy-duty waterproof stainless wireless portable slim premium original murah warna".split()
NOUNS = ("drill saw hammer lamp bulb cable charger powerbank kettle blender sofa chair table rug curtain faucet "
         "kaos kemeja sepatu tas celana jaket helm dompet botol").split()
SPECS = "12V 18V 20V 500W 1000W 2m 5m 32GB 64GB XL L M 1L 2L set-of-3 pack-of-6 black white red navy".split()
# Child process for the memory figures: runs a command and prints the peak RSS (KiB) of that one child.
PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); " \
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
FLOOR = "import sys; from hetmoe.data.validate import check_dataset; from hetmoe.experts.card import default_router_expert, get_card; " \
        "from hetmoe.experts.registry import build_encoder; build_encoder(get_card(default_router_expert())); check_dataset(sys.argv[1])"


def titles(n: int, seed: int = 0) -> list[str]:
    """Unique, product-like titles of varied length (a model number keeps them distinct)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(BRANDS), *rng.sample(ADJECTIVES, rng.randint(0, 3)), rng.choice(NOUNS),
                 *rng.sample(SPECS, rng.randint(0, 3)), f"{rng.choice('ABCDEFGHKMRTX')}{i:06d}"]
        if rng.random() < 0.2:
            words += ["-", *rng.choices(NOUNS + ADJECTIVES, k=rng.randint(5, 25))]
        out.append(" ".join(words))
    return out


def write_catalog(root: Path, n_items: int, n_queries: int = 100) -> tuple[list[str], list[str]]:
    """A valid dataset folder; returns its item texts and query texts."""
    from hetmoe.data.dataset import write_dataset

    items, queries = titles(n_items), [" ".join(t.split()[:2]) for t in titles(n_queries, seed=1)]
    market = ["us", "id"] * (max(n_items, n_queries) // 2 + 1)
    write_dataset(
        root,
        pl.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": items, "market": market[:n_items]}),
        pl.DataFrame({"query_id": [f"q{j}" for j in range(n_queries)], "text": queries, "market": market[:n_queries]}),
        pl.DataFrame({"query_id": [f"q{j}" for j in range(n_queries)], "item_id": [f"i{j}" for j in range(n_queries)],
                      "label": [1.0] * n_queries, "relevant": [1] * n_queries,
                      "split": ["train" if j % 4 else "valid" for j in range(n_queries)]}),
    )
    return items, queries


def raw_call(encoder, items: list[str], queries: list[str]) -> None:
    """The backend's own batch call over the same texts the store encodes."""
    encoder.encode(items, "document")
    encoder.encode(queries, "query")


def throughput(expert: str, workdir: Path, n_items: int, min_seconds: float, repeats: int, chunk_size: int | None,
               budget_seconds: float = 0.0) -> dict:
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.store.embed import embed_dataset

    card = get_card(expert)
    encoder = build_encoder(card)
    encoder.encode(titles(64, seed=9), "document")  # warm-up: lazy inits are not throughput
    while True:  # grow the catalog until the raw call is long enough to time
        data = workdir / f"data-{n_items}"
        items, queries = write_catalog(data, n_items)
        began = time.perf_counter()
        raw_call(encoder, items, queries)
        if time.perf_counter() - began >= min_seconds or n_items >= 400_000:
            break
        n_items = min(400_000, int(n_items * max(2.0, 1.2 * min_seconds / max(time.perf_counter() - began, 1e-3))))
    raw, stored, encode_s, raw_cpu, stored_cpu = [], [], [], [], []
    began_all = time.perf_counter()
    # Interleaved, so load drift on a shared machine hits both sides alike; at least ``repeats`` rounds, more while
    # the time budget lasts (at most 8): a best-of-N needs a larger N for fast experts on a noisy host.
    # The order alternates (raw first, then embed first), so a second-call penalty or drift within a round does
    # not always land on the same side.
    def time_raw() -> None:
        began, cpu = time.perf_counter(), time.process_time()
        raw_call(encoder, items, queries)
        raw.append(time.perf_counter() - began)
        raw_cpu.append(time.process_time() - cpu)

    def time_embed() -> None:
        shutil.rmtree(workdir / "stores", ignore_errors=True)
        began, cpu = time.perf_counter(), time.process_time()
        summary = embed_dataset(data, card, workdir / "stores", chunk_size=chunk_size, encoder=encoder, progress=False)
        stored.append(time.perf_counter() - began)
        stored_cpu.append(time.process_time() - cpu)
        manifest = json.loads((workdir / "stores" / expert / "manifest.json").read_text())
        encode_s.append(sum(part["encode_seconds"] for part in manifest["timing"].values()))
        assert summary["complete"]

    while len(raw) < repeats or len(raw) % 2 or (len(raw) < 8 and time.perf_counter() - began_all < budget_seconds):
        for step in (time_raw, time_embed) if len(raw) % 2 == 0 else (time_embed, time_raw):
            step()
    texts = n_items + len(queries)
    return {"expert": expert, "texts": texts, "raw_seconds": round(min(raw), 3), "embed_seconds": round(min(stored), 3),
            "embed_encode_seconds": round(min(encode_s), 3), "raw_texts_per_s": round(texts / min(raw), 1),
            "embed_texts_per_s": round(texts / min(stored), 1), "ratio": round(min(raw) / min(stored), 4),
            "ratio_paired_median": round(float(np.median(np.array(raw) / np.array(stored))), 4),
            "cpu_ratio_paired_median": round(float(np.median(np.array(raw_cpu) / np.array(stored_cpu))), 4),
            "outside_encode_share_median": round(float(np.median(
                [max(0.0, s - e) / s for s, e in zip(stored, encode_s)])), 4), "rounds": len(raw)}


def peak_rss_mib(command: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], check=True, capture_output=True, text=True)
    return round(int(out.stdout.strip().splitlines()[-1]) / 1024, 1)


def memory(workdir: Path, sizes: list[int], chunk_size: int | None) -> list[dict]:
    """Peak RSS of ``hetmoe embed --expert static`` per catalog size, and of loading model + dataset alone."""
    rows = []
    for n in sizes:
        data = workdir / f"mem-{n}"
        write_catalog(data, n, n_queries=1000)
        cli = [sys.executable, "-c", "from hetmoe.cli import main; main()", "embed", "--expert", default_router_expert(),
               "--data", str(data), "--store", str(workdir / f"mem-stores-{n}"),
               *(["--chunk-size", str(chunk_size)] if chunk_size else [])]
        rows.append({"items": n, "embed_peak_rss_mib": peak_rss_mib(cli),
                     "floor_peak_rss_mib": peak_rss_mib([sys.executable, "-c", FLOOR, str(data)])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", default=None, help="Comma-separated expert names (default: the default set).")
    parser.add_argument("--items", type=int, default=2000, help="Starting catalog size for throughput.")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="Grow the catalog until raw encode takes this long.")
    parser.add_argument("--repeats", type=int, default=4,
                        help="Best of at least N interleaved rounds for both timings (even: each order equally often).")
    parser.add_argument("--budget-seconds", type=float, default=60.0,
                        help="Keep adding rounds (up to 8) while an expert's rounds took less than this.")
    parser.add_argument("--memory-items", default="50000,200000")
    parser.add_argument("--chunk-size", type=int, default=None, help="Default: the store's default for each expert.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.experts.card import default_experts

    experts = args.experts.split(",") if args.experts else default_experts()
    sizes = [int(n) for n in args.memory_items.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [throughput(e, Path(tmp) / e, args.items, args.min_seconds, args.repeats, args.chunk_size,
                           args.budget_seconds) for e in experts]
        mem = memory(Path(tmp), sizes, args.chunk_size)
    out = {"name": "embed", "chunk_size": args.chunk_size, "repeats": args.repeats, "budget_seconds": args.budget_seconds,
           "throughput": rows, "memory": mem,
           "min_ratio": min(r["ratio"] for r in rows) if rows else None}
    publish("embed", out)
    print_table(rows, [("expert", "expert", 10), ("texts", "texts", 8), ("raw_texts_per_s", "raw t/s", 10),
                       ("embed_texts_per_s", "embed t/s", 11), ("ratio", "ratio", 8), ("ratio_paired_median", "paired", 8),
                       ("cpu_ratio_paired_median", "cpu", 8), ("outside_encode_share_median", "outside", 9)])
    print_table(mem, [("items", "items", 8), ("embed_peak_rss_mib", "embed peak MiB", 16),
                      ("floor_peak_rss_mib", "floor MiB", 11)])


if __name__ == "__main__":
    main()
