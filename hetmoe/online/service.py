"""The HTTP service: a thin FastAPI layer over :class:`~hetmoe.online.scorer.Scorer`.

Every client mistake becomes a 4xx whose JSON names the field (``{"error": "<field>: <what>", "field": ...}``):
the Scorer's own checks (:mod:`hetmoe.online.checks`) and this layer's size limits alike. /search on a model served
without FAISS indexes is a 503; no request input reaches the filesystem, and unexpected exceptions become a 500
without killing the worker.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hetmoe.errors import HetmoeError
from hetmoe.online.checks import RequestError, SearchUnavailable
from hetmoe.online.prometheus import CONTENT_TYPE, Metrics
from hetmoe.online.middleware import GuardMiddleware

if TYPE_CHECKING:
    from hetmoe.online.scorer import Scorer

logger = logging.getLogger(__name__)

MODEL_ENV = "HETMOE_MODEL"
API_KEY_ENV = "HETMOE_API_KEY"
WARM_ENV = "HETMOE_WARM"
CORES_ENV = "HETMOE_ENCODE_CORES"  # the cores one worker process may give a query (set by --http-workers N)
STORE_ENV, DATA_ENV = "HETMOE_STORE", "HETMOE_DATA"  # --store / --data of `hetmoe serve` (empty: the model's own)
DOCS, OPENAPI = "/docs", "/openapi.json"
ENDPOINTS = frozenset({"/score", "/search", "/healthz", "/metrics", DOCS, OPENAPI})


@dataclass(frozen=True)
class Limits:
    """Per-request bounds: they keep one request's cost predictable and the body parser's memory small."""

    max_item_ids: int = 1000
    max_item_id_chars: int = 256
    max_query_chars: int = 512
    max_k: int = 100
    max_candidates: int = 2000
    max_body_bytes: int = 1 << 20


class ScoreBody(BaseModel):
    """POST /score. Strict types: a number where a string belongs is an error, not silently coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)
    query: str
    market: str
    item_ids: list[str]


class SearchBody(BaseModel):
    """POST /search."""

    model_config = ConfigDict(extra="forbid", strict=True)
    query: str
    market: str
    k: int = Field(default=10)
    candidates: int = Field(default=200)


def _field_name(loc: tuple[Any, ...]) -> str:
    """('body', 'item_ids', 3) -> 'item_ids[3]'; a body that is not an object at all -> 'body'."""
    parts = [p for p in loc if p != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _printable(text: str) -> str:
    """Client text echoed in an error may hold lone surrogates, which cannot be encoded as UTF-8 JSON."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": _printable(message), "field": _printable(field)}, status_code=status)


class _Bounds:
    """The size limits of a shared service; what a value means (market, empty query, ...) the Scorer checks."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def query(self, text: str) -> str:
        if len(text) > self.limits.max_query_chars:
            raise RequestError("query", f"{len(text)} characters is over the limit of {self.limits.max_query_chars}")
        return text

    def item_ids(self, item_ids: list[str]) -> list[str]:
        limit = self.limits.max_item_ids
        if len(item_ids) > limit:
            raise RequestError("item_ids", f"{len(item_ids)} ids is over the limit of {limit} per request; "
                               "split the request")
        longest = max((len(i) for i in item_ids), default=0)
        if longest > self.limits.max_item_id_chars:
            raise RequestError("item_ids", f"an id of {longest} characters is over the limit of "
                               f"{self.limits.max_item_id_chars}")
        return item_ids

    def bounded(self, field: str, value: int, high: int) -> int:
        if not 1 <= value <= high:
            raise RequestError(field, f"must be between 1 and {high}, got {value}")
        return value


def create_app(scorer: Scorer, *, api_key: str | None = None, limits: Limits | None = None, metrics: Metrics | None = None) -> FastAPI:
    """Build the app around a loaded Scorer. With ``api_key`` set, every endpoint but /healthz needs X-API-Key, the
    OpenAPI schema (/openapi.json) and its browsable page (/docs) included."""
    limits = limits or Limits()
    metrics = metrics or Metrics()
    checks = _Bounds(limits)
    app = FastAPI(title="hetmoe", version=_version(), docs_url=DOCS, redoc_url=None, openapi_url=OPENAPI,
                  description="Relevance scores and search over a fitted hetmoe model: POST /score rescores given "
                  "items for a query, POST /search retrieves and reranks. Errors are JSON {error, field}.")
    app.state.scorer = scorer
    app.state.metrics = metrics
    app.state.limits = limits
    app.add_middleware(GuardMiddleware, metrics=metrics, known_paths=ENDPOINTS, max_body_bytes=limits.max_body_bytes, api_key=api_key)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        field = _field_name(tuple(first.get("loc", ())))
        kind = first.get("type", "")
        if kind == "json_invalid":
            return _error(400, "body", "body: not valid JSON")
        if kind == "model_attributes_type" or kind == "dict_type" or field == "body":
            return _error(422, "body", "body: must be a JSON object")
        if kind == "extra_forbidden":
            return _error(422, field, f"{field}: unknown field")
        return _error(422, field, f"{field}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (unparsable body, unknown path, wrong method) in the same shape as ours
        field = "body" if err.status_code == 400 else "path"
        where = "body" if field == "body" else f"{request.method} {request.url.path}"
        return _error(err.status_code, field, f"{where}: {str(err.detail).lower()}")

    @app.exception_handler(RequestError)
    async def _bad_value(_: Request, err: RequestError) -> JSONResponse:
        return _error(422, err.field, str(err))

    @app.exception_handler(SearchUnavailable)
    async def _no_search(_: Request, err: SearchUnavailable) -> JSONResponse:
        return _error(503, "search", f"search: {err}")

    @app.exception_handler(HetmoeError)
    async def _hetmoe(_: Request, err: HetmoeError) -> JSONResponse:
        return _error(400, "request", str(err))

    @app.exception_handler(Exception)
    async def _bug(_: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error in request")
        return _error(500, "server", "server: internal error; see the service log")

    @app.post("/score")
    def score(body: ScoreBody) -> JSONResponse:
        result = scorer.score(checks.query(body.query), checks.item_ids(body.item_ids), body.market)
        metrics.observe_routing(result.routing.experts)
        return JSONResponse(result.to_dict())

    @app.post("/search")
    def search(body: SearchBody) -> JSONResponse:
        query, market = checks.query(body.query), body.market
        k = checks.bounded("k", body.k, limits.max_k)
        candidates = checks.bounded("candidates", body.candidates, limits.max_candidates)
        result = scorer.search(query, market, k=k, candidates=max(candidates, k))
        metrics.observe_routing(result.routing.experts)
        return JSONResponse(result.to_dict())

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "experts": list(scorer.experts), "markets": sorted(scorer.markets),
                "items": scorer.n_items, "search": scorer.retriever is not None}

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--http-workers N``: each worker process loads the model named by $HETMOE_MODEL."""
    from hetmoe.online.scorer import Scorer

    model = os.environ.get(MODEL_ENV)
    if not model:
        raise HetmoeError(f"${MODEL_ENV} is not set; start the service with 'hetmoe serve --model DIR'")
    scorer = Scorer.load(model, store_root=os.environ.get(STORE_ENV) or None, data_dir=os.environ.get(DATA_ENV) or None,
                         with_indexes=None, encode_cores=int(os.environ.get(CORES_ENV) or 0) or None)
    if os.environ.get(WARM_ENV):
        scorer.warm()
    return create_app(scorer, api_key=os.environ.get(API_KEY_ENV) or None)


def _version() -> str:
    from hetmoe import __version__

    return __version__
