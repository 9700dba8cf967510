"""What the integrity checks cost: ``embed`` with and without chunk checksums, reading a store part with and without
them, and ``Scorer.load`` with every check, without the digest checks of model files, and with no check at all; and,
as the base of a cost model, how fast crc32c and sha256 hash on this machine.

Usage: ``python bench/integrity.py [--items-per-market 3000] [--queries-per-market 300] [--repeats 5] [--workdir DIR]``

A synthetic catalog (``hetmoe data demo``, six markets) is embedded by ``static`` and ``wordllama`` (each encoder built
once, up front: model loading is not timed) into a fresh store per run, with the crc32c codec and without it (the
codecs of stores written before checksums), the two arms alternating so that a change in the machine's load hits
both. Reading: ``EmbeddingStore.open(...).load()`` of the items part (chunk presence, checksums, value checks).
``Scorer.load``: a small model (static + wordllama + the lexical expert, k=1) loaded (encoders handed over, so only
files are read) with (a) every check, (b) digests not verified (model and lexical files read unchecked), (c) no check:
the store without checksums, chunk presence, value and digest checks skipped. Each arm reports the median, min and
max over the repeats; the result goes to bench/results/integrity.json.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from _tables import print_table, publish

EXPERTS = ("static", "wordllama")


@contextlib.contextmanager
def without_checksums() -> Iterator[None]:
    """Stores written as before checksums: no crc32c codec on any array."""
    from zarr.codecs import ZstdCodec

    import hetmoe.store.embed as embed

    with mock.patch.object(embed, "vector_codecs", lambda: []), \
            mock.patch.object(embed, "id_codecs", lambda: [ZstdCodec(level=0)]):
        yield


@contextlib.contextmanager
def without_digests() -> Iterator[None]:
    """Model and lexical files read without their digest check."""
    import hetmoe.lexical.persist as persist
    import hetmoe.moe.artifacts as artifacts

    skip = lambda *args, **kwargs: True  # noqa: E731
    with mock.patch.object(artifacts, "verify_digests", skip), mock.patch.object(persist, "verify_digests", skip):
        yield


@contextlib.contextmanager
def without_store_checks() -> Iterator[None]:
    """Store parts read without the chunk presence and value checks (the checksum is the store's own codec)."""
    import hetmoe.store.zarr_store as zarr_store

    with mock.patch.object(zarr_store, "check_part", lambda *args, **kwargs: None), \
            mock.patch.object(zarr_store, "check_values", lambda *args, **kwargs: None):
        yield


def spread(values: list[float], digits: int = 4) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def hash_speeds(megabytes: int = 64, repeats: int = 5) -> dict[str, float]:
    """GB/s of the two digests on one buffer (best of ``repeats``): crc32c over every chunk written and read, sha256
    over every model and lexical file loaded."""
    import hashlib

    import google_crc32c

    buffer = os.urandom(megabytes << 20)
    speeds = {"crc32c": lambda: google_crc32c.value(buffer), "sha256": lambda: hashlib.sha256(buffer).digest()}
    return {name: round(len(buffer) / 1e9 / min(timed(fn) for _ in range(repeats)), 2) for name, fn in speeds.items()}


def bench_embed(data: Path, work: Path, encoders: dict[str, Any], texts: int, repeats: int) -> dict[str, Any]:
    """Throughput (texts/s) and store read time of each expert, checksums on and off, alternating."""
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.zarr_store import EmbeddingStore

    out: dict[str, Any] = {}
    for name, encoder in encoders.items():
        runs: dict[str, list[float]] = {"crc32c": [], "none": []}
        reads: dict[str, list[float]] = {"crc32c": [], "none": []}
        for repeat in range(repeats):
            for arm in (("crc32c", "none") if repeat % 2 == 0 else ("none", "crc32c")):
                store = work / f"embed-{arm}"
                shutil.rmtree(store, ignore_errors=True)
                guard = without_checksums() if arm == "none" else contextlib.nullcontext()
                with guard:
                    runs[arm].append(texts / timed(lambda: embed_dataset(data, encoder.card, store, encoder=encoder,
                                                                          progress=False)))
                reads[arm].append(timed(lambda: EmbeddingStore.open(store / name / "items.zarr").load()))
        out[name] = {"texts_per_s": {arm: spread(v, 1) for arm, v in runs.items()},
                     "read_items_s": {arm: spread(v) for arm, v in reads.items()},
                     "checksum_cost_pct": round(100 * (statistics.median(runs["none"]) / statistics.median(runs["crc32c"])
                                                       - 1), 2)}
    return out


def bench_load(data: Path, work: Path, encoders: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Scorer.load (every check / no digests / no check at all), alternating arms."""
    from hetmoe.lexical.store import fit_lexical_store
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.online.scorer import Scorer
    from hetmoe.store.embed import embed_dataset

    stores = {"checked": work / "stores", "plain": work / "stores-plain"}
    for arm, root in stores.items():
        with without_checksums() if arm == "plain" else contextlib.nullcontext():
            for name, encoder in encoders.items():
                embed_dataset(data, encoder.card, root, encoder=encoder, progress=False)
        fit_lexical_store(data, root, name="lexical", progress=False)
    model = work / "model"
    fit(data, stores["checked"], model, list(encoders), k=1, variants=(), router_expert=EXPERTS[0],
        train_config=TrainConfig(max_epochs=2), routers=["hard"], spec_overrides={"lexical_store": "lexical"})
    arms = {"all checks": (stores["checked"], []), "no digest checks": (stores["checked"], [without_digests]),
            "no checks": (stores["plain"], [without_digests, without_store_checks])}

    def load(arm: str) -> None:
        root, guards = arms[arm]
        with contextlib.ExitStack() as stack:
            for guard in guards:
                stack.enter_context(guard())
            Scorer.load(model, store_root=root, with_indexes=False, encoders=encoders).close()

    for arm in arms:  # builds the item-neighbour tables of each store once, untimed
        load(arm)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    order = list(arms)
    for repeat in range(repeats):
        for arm in order if repeat % 2 == 0 else order[::-1]:
            times[arm].append(timed(lambda: load(arm)))
    return {"seconds": {arm: spread(v) for arm, v in times.items()},
            "model_files_bytes": sum(p.stat().st_size for p in model.iterdir() if p.is_file())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items-per-market", type=int, default=3000)
    parser.add_argument("--queries-per-market", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hetmoe.integrity").setLevel(logging.ERROR)  # the unchecked arm's stores say so each load

    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder

    work = args.workdir or Path(tempfile.mkdtemp(prefix="hetmoe-integrity-"))
    data = generate_demo(work / "data", args.items_per_market, args.queries_per_market, seed=0)
    encoders = {name: build_encoder(get_card(name)) for name in EXPERTS}
    texts = 6 * (args.items_per_market + args.queries_per_market)
    result = {
        "date": time.strftime("%Y-%m-%d"), "items": 6 * args.items_per_market, "queries": 6 * args.queries_per_market,
        "repeats": args.repeats, "load_average_before": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
        "hash_gb_per_s": hash_speeds(),
        "embed": bench_embed(data, work, encoders, texts, args.repeats),
        "scorer_load": bench_load(data, work, encoders, args.repeats),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    publish("integrity", result)
    rows = [{"what": f"embed {name} (texts/s)", **{arm: row["texts_per_s"][arm]["median"] for arm in ("crc32c", "none")},
             "spread": f"{row['texts_per_s']['crc32c']['min']:.0f}-{row['texts_per_s']['crc32c']['max']:.0f} / "
                       f"{row['texts_per_s']['none']['min']:.0f}-{row['texts_per_s']['none']['max']:.0f}"}
            for name, row in result["embed"].items()]
    rows += [{"what": f"read {name} items (s)", **{arm: row["read_items_s"][arm]["median"] for arm in ("crc32c", "none")},
              "spread": ""} for name, row in result["embed"].items()]
    print_table(rows, [("what", "", 28), ("crc32c", "checked", 12), ("none", "unchecked", 12), ("spread", "min-max", 26)])
    load = result["scorer_load"]["seconds"]
    print_table([{"arm": arm, **v} for arm, v in load.items()],
                [("arm", "Scorer.load (s)", 20), ("median", "median", 10), ("min", "min", 10), ("max", "max", 10)])
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
