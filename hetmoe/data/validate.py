"""Full checks of a dataset folder, each problem one line naming the file, the column and a few offending ids.

``load_dataset`` only checks columns and types so it stays cheap; :func:`validate` also checks content
(duplicate ids, judgments pointing at unknown ids, empty texts, bad split/label values, a query in two splits,
a market with no judgments). Commands that build on a dataset call :func:`check_dataset`, which refuses the
folder with the first problem; ``hetmoe data validate DIR`` prints all of them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from hetmoe.data.dataset import OPTIONAL, SCHEMA, SPLITS, Dataset, _coerce, _kind
from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)
SAMPLE = 3  # offending ids shown per problem
TABLES = ("items", "queries", "judgments")
ID_COLUMN = {"items": "item_id", "queries": "query_id", "judgments": "query_id"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where (file, column), what, a few offending ids, and how to fix it."""

    file: str
    column: str
    message: str
    ids: tuple[str, ...] = ()
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: column '{self.column}'" if self.column else self.file
        sample = f" (e.g. {', '.join(self.ids)})" if self.ids else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}: {self.message}{sample}{hint}"


def _sample(values: pl.Series) -> tuple[str, ...]:
    return tuple(str(v) for v in values.unique(maintain_order=True).head(SAMPLE).to_list())


def _read(root: Path, table: str, problems: list[Problem]) -> pl.DataFrame | None:
    """Read one table and check its columns/types, recording every problem instead of stopping at the first."""
    path = root / f"{table}.parquet"
    if not path.is_file():
        problems.append(Problem(str(path), "", "file not found", hint="a dataset folder needs items.parquet, queries.parquet and judgments.parquet"))
        return None
    try:
        frame = pl.read_parquet(path)
    except Exception as err:  # polars raises several types for a corrupt file
        problems.append(Problem(str(path), "", f"not a readable Parquet file ({type(err).__name__})", hint="rewrite it with polars or pandas"))
        return None
    before = len(problems)
    for column, kind in SCHEMA[table].items():
        if column not in frame.columns:
            problems.append(Problem(str(path), column, f"missing (has: {', '.join(frame.columns)})", hint=f"{table}.parquet needs {', '.join(SCHEMA[table])}"))
    for column, kind in {**SCHEMA[table], **OPTIONAL[table]}.items():
        if column in frame.columns:
            have = _kind(frame.schema[column])
            if not (have == kind or (kind == "float" and have == "int")):
                problems.append(Problem(str(path), column, f"has type {frame.schema[column]}, expected {kind}", _sample(frame[column].drop_nulls()), hint=f"cast the column to {kind}"))
    if len(problems) > before:
        return None
    frame = _coerce(frame, table, path)
    if frame.height == 0:
        problems.append(Problem(str(path), ID_COLUMN[table], "has no rows", hint="a dataset needs items, queries and judgments"))
    return frame


def _check_table(frame: pl.DataFrame, table: str, path: str, problems: list[Problem]) -> None:
    """Nulls in required columns, duplicate ids and empty texts within one table."""
    id_col = ID_COLUMN[table]
    for column in SCHEMA[table]:
        nulls = frame.filter(pl.col(column).is_null())
        if nulls.height:
            problems.append(Problem(path, column, f"{nulls.height} null value(s)", _sample(nulls[id_col].drop_nulls()), hint="fill or drop those rows"))
    if table in ("items", "queries"):
        dup = frame.filter(pl.col(id_col).is_duplicated())[id_col].drop_nulls()
        if len(dup):
            problems.append(Problem(path, id_col, f"{dup.n_unique()} duplicate id(s)", _sample(dup), hint="ids must be unique; drop or rename the repeats"))
        text_col = "title" if table == "items" else "text"
        empty = frame.filter(pl.col(text_col).str.strip_chars().str.len_chars() == 0)
        if empty.height:
            problems.append(Problem(path, text_col, f"{empty.height} empty text(s)", _sample(empty[id_col]), hint="give every row a non-empty text or drop it"))
        empty_market = frame.filter(pl.col("market").str.strip_chars().str.len_chars() == 0)
        if empty_market.height:
            problems.append(Problem(path, "market", f"{empty_market.height} empty market code(s)", _sample(empty_market[id_col]), hint="set a market code (e.g. 'SG')"))


def _check_judgments(root: Path, items: pl.DataFrame | None, queries: pl.DataFrame | None, judgments: pl.DataFrame, problems: list[Problem]) -> None:
    """Values, duplicates, references to unknown ids, splits that share a query, markets without judgments."""
    path = str(root / "judgments.parquet")
    pair = pl.col("query_id") + " / " + pl.col("item_id")
    bad_split = judgments.filter(~pl.col("split").is_in(SPLITS) & pl.col("split").is_not_null())
    if bad_split.height:
        problems.append(Problem(path, "split", f"{bad_split.height} row(s) with a split other than {'/'.join(SPLITS)}", _sample(bad_split["split"]), hint="use train, valid or test"))
    bad_rel = judgments.filter(~pl.col("relevant").is_in([0, 1]) & pl.col("relevant").is_not_null())
    if bad_rel.height:
        problems.append(Problem(path, "relevant", f"{bad_rel.height} value(s) other than 0/1", _sample(bad_rel.select(pair).to_series()), hint="relevant is 1 for a relevant pair, else 0"))
    bad_label = judgments.filter(~pl.col("label").is_finite() & pl.col("label").is_not_null())
    if bad_label.height:
        problems.append(Problem(path, "label", f"{bad_label.height} non-finite label(s)", _sample(bad_label.select(pair).to_series()), hint="labels must be finite numbers"))
    dup = judgments.filter(pl.struct("query_id", "item_id").is_duplicated())
    if dup.height:
        problems.append(Problem(path, "item_id", f"{dup.height} rows repeat a (query_id, item_id) pair",
                                _sample(dup.select(pair).to_series()),
                                hint="keep one judgment per pair: re-import the source with 'hetmoe data import-csv' or "
                                     "'hetmoe data import-esci', which aggregate repeats (mean grade)"))
    for ref, frame, column in (("queries", queries, "query_id"), ("items", items, "item_id")):
        if frame is None:
            continue
        unknown = judgments.filter(~pl.col(column).is_in(frame[column].implode()) & pl.col(column).is_not_null())[column]
        if len(unknown):
            problems.append(Problem(path, column, f"{unknown.n_unique()} id(s) not in {ref}.parquet", _sample(unknown), hint=f"add them to {ref}.parquet or drop those judgments"))
    shared = judgments.group_by("query_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    if shared.height:
        problems.append(Problem(path, "split", f"{shared.height} query id(s) appear in more than one split", _sample(shared.sort("query_id")["query_id"]), hint="split by query: every judgment of a query must share its split"))
    for split in ("train", "valid"):
        if not (judgments["split"] == split).any():
            problems.append(Problem(path, "split", f"no '{split}' judgments (test is optional, train and valid are not)", hint="assign some queries to it"))
    if queries is not None:
        judged = set(queries.filter(pl.col("query_id").is_in(judgments["query_id"].implode()))["market"].drop_nulls().to_list())
        markets = set(queries["market"].drop_nulls().to_list()) | (set(items["market"].drop_nulls().to_list()) if items is not None else set())
        missing = sorted(m for m in markets - judged if m.strip())
        if missing:
            problems.append(Problem(path, "query_id", f"{len(missing)} market(s) with items or queries but no judgments", tuple(missing[:SAMPLE]), hint="judge some of their queries or drop that market's rows"))
        _check_classes(path, judgments, queries, problems)


def _check_classes(path: str, judgments: pl.DataFrame, queries: pl.DataFrame, problems: list[Problem]) -> None:
    """AUC and training need relevant and non-relevant pairs: overall, in every market, in train and in valid
    (a class missing there gives NaN metrics and an early stopping that never picks an epoch)."""
    rel = judgments.filter(pl.col("relevant").is_in([0, 1]))
    labelled = rel.join(queries.select("query_id", "market"), on="query_id", how="inner")
    for value, name in ((1, "positive (relevant = 1)"), (0, "negative (relevant = 0)")):
        kind = name.split()[0]
        if not (rel["relevant"] == value).any():
            hint = "check the label mapping (e.g. --relevant-min) or judge some relevant pairs" if value else (
                "judge some non-relevant pairs")
            problems.append(Problem(path, "relevant", f"no {name} judgments at all", hint=hint))
            continue
        for by in ("market", "split"):
            frame = labelled if by == "market" else rel.filter(pl.col("split").is_in(["train", "valid"]))
            counts = frame.group_by(by).agg((pl.col("relevant") == value).sum().alias("n")).filter(pl.col("n") == 0)
            lacking = tuple(sorted(str(v) for v in counts[by].drop_nulls().to_list()))
            if lacking:
                fix = (f"judge some {kind} pairs there or drop that market's rows" if by == "market"
                       else f"move some queries with {kind} pairs into it")
                problems.append(Problem(path, "relevant", f"{len(lacking)} {by}(s) without any {name} judgment",
                                        lacking[:SAMPLE], hint=fix))


def warn_oversized(frame: pl.DataFrame, table: str, path: str) -> None:
    """Warn about texts longer than the experts read (:data:`hetmoe.experts.base.MAX_TEXT_CHARS`): they are cut
    there, so their end never reaches a vector; usually a description or a whole page pasted into a title."""
    from hetmoe.experts.base import MAX_TEXT_CHARS

    for column in ("title", "text") if table == "items" else ("text",):
        if column not in frame.columns:
            continue
        long = frame.filter(pl.col(column).str.len_chars() > MAX_TEXT_CHARS)
        if long.height:
            top = long.sort(pl.col(column).str.len_chars(), descending=True).row(0, named=True)
            log.warning("%s: column '%s': %d text(s) longer than %d characters (longest: %s, %d characters); the experts "
                        "read only their first %d characters", path, column, long.height, MAX_TEXT_CHARS,
                        top[ID_COLUMN[table]], len(top[column]), MAX_TEXT_CHARS)


def inspect_dataset(root: str | os.PathLike[str]) -> tuple[list[Problem], Dataset | None]:
    """All problems, plus the dataset when its three tables could be read with the right columns (texts too long
    for the experts are a warning, not a problem)."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), "", "no such dataset folder", hint=f"create one with 'hetmoe data demo --out {root}'")], None
    problems: list[Problem] = []
    frames = {table: _read(root, table, problems) for table in TABLES}
    for table in ("items", "queries"):
        if frames[table] is not None:
            _check_table(frames[table], table, str(root / f"{table}.parquet"), problems)
            warn_oversized(frames[table], table, str(root / f"{table}.parquet"))
    if frames["judgments"] is not None:
        _check_table(frames["judgments"], "judgments", str(root / "judgments.parquet"), problems)
        _check_judgments(root, frames["items"], frames["queries"], frames["judgments"], problems)
    if any(frame is None for frame in frames.values()):
        return problems, None
    return problems, Dataset(root, frames["items"], frames["queries"], frames["judgments"])


def market_warnings(dataset: Dataset) -> list[str]:
    """Per market, what makes a dataset valid but a market weak: no items (its judged items belong to other markets,
    and search there finds nothing), no train judgments (the model never fits on it), no relevant train pair."""
    train = dataset.judgments.filter(pl.col("split") == "train").join(
        dataset.queries.select("query_id", "market"), on="query_id", how="inner")
    with_items = set(dataset.items["market"].drop_nulls().to_list())
    trained = set(train["market"].to_list())
    positive = set(train.filter(pl.col("relevant") == 1)["market"].to_list())
    warnings = []
    for market in sorted(set(dataset.queries["market"].drop_nulls().to_list()) | with_items):
        if market not in with_items:
            warnings.append(f"market {market}: no items (its judged items belong to other markets; search in it "
                            "finds nothing)")
        if market not in trained:
            warnings.append(f"market {market}: no train judgments (the heads never fit on it; a model with a "
                            "transfer head scores it as an unseen market)")
        elif market not in positive:
            warnings.append(f"market {market}: no relevant train judgment (the heads learn nothing of what is "
                            "relevant there)")
    return warnings


def validate(root: str | Path) -> list[Problem]:
    """Every problem of the dataset folder (empty list: valid)."""
    return inspect_dataset(root)[0]


def check_dataset(root: str | os.PathLike[str]) -> Dataset:
    """The dataset, or a HetmoeError with its first problem: the guard every command that consumes a dataset calls.
    A dataset this function returned before is returned as it is (a command validates its dataset once)."""
    if isinstance(root, Dataset) and root.checked:
        return root
    problems, dataset = inspect_dataset(root)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise HetmoeError(f"{problems[0]}{more}; run 'hetmoe data validate {root}' for all")
    assert dataset is not None
    for warning in market_warnings(dataset):
        log.warning("%s: %s", dataset.root, warning)
    return replace(dataset, checked=True)


def summary(dataset: Dataset) -> pl.DataFrame:
    """Per market: items, queries, judged pairs, positive rate and pairs per split (judgments counted by query market)."""
    pairs = dataset.judgments.join(dataset.queries.select("query_id", "market"), on="query_id", how="inner")
    per_pair = pairs.group_by("market").agg(
        pl.len().alias("pairs"),
        pl.col("relevant").cast(pl.Float64).mean().round(3).alias("positive_rate"),
        *[(pl.col("split") == s).sum().alias(s) for s in SPLITS],
    )
    n_items = dataset.items.group_by("market").agg(pl.len().alias("items"))
    n_queries = dataset.queries.group_by("market").agg(pl.len().alias("queries"))
    markets = pl.DataFrame({"market": sorted(set(dataset.items["market"].drop_nulls()) | set(dataset.queries["market"].drop_nulls()))})
    out = markets.join(n_items, on="market", how="left").join(n_queries, on="market", how="left").join(per_pair, on="market", how="left")
    if "lang" in dataset.queries.columns:
        lang = dataset.queries.group_by("market").agg(pl.col("lang").drop_nulls().mode().first().alias("lang"))
        out = out.join(lang, on="market", how="left")
    counts = ["items", "queries", "pairs", *SPLITS]
    return out.with_columns(pl.col(counts).fill_null(0).cast(pl.Int64)).select(
        "market", *(["lang"] if "lang" in out.columns else []), *counts[:3], "positive_rate", *SPLITS
    )
