"""The HTTP service: a thin FastAPI layer over :class:`~hetmoe.online.scorer.Scorer`.

Every client mistake becomes a 4xx whose JSON names the field (``{"error": "<field>: <what>", "field": ...}``);
no request input reaches the filesystem, and unexpected exceptions become a 500 without killing the worker.
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
from hetmoe.online.metrics import CONTENT_TYPE, Metrics
from hetmoe.online.middleware import GuardMiddleware

if TYPE_CHECKING:
    from hetmoe.online.scorer import Scorer

logger = logging.getLogger(__name__)

MODEL_ENV = "HETMOE_MODEL"
API_KEY_ENV = "HETMOE_API_KEY"
WARM_ENV = "HETMOE_WARM"
CORES_ENV = "HETMOE_ENCODE_CORES"  # the cores one worker process may give a query (set by --workers N)
ENDPOINTS = frozenset({"/score", "/search", "/healthz", "/metrics"})


@dataclass(frozen=True)
class Limits:
    """Per-request bounds: they keep one request's cost predictable and the body parser's memory small."""

    max_item_ids: int = 1000
    max_item_id_chars: int = 256
    max_query_chars: int = 512
    max_k: int = 100
    max_candidates: int = 2000
    max_body_bytes: int = 1 << 20


class FieldError(Exception):
    """A request value that parses but is not acceptable; answered as 422 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


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


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: no encoder or JSON writer accepts them
        return False
    return True


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": _printable(message), "field": _printable(field)}, status_code=status)


class _Checks:
    """Value checks that depend on the loaded model (markets) and the configured limits."""

    def __init__(self, scorer: Scorer, limits: Limits) -> None:
        self.scorer = scorer
        self.limits = limits
        self.markets = frozenset(scorer.markets)

    def query(self, text: str) -> str:
        if not _valid_unicode(text):
            raise FieldError("query", "not valid Unicode (lone surrogate)")
        if not text.strip():
            raise FieldError("query", "must not be empty or only whitespace")
        if len(text) > self.limits.max_query_chars:
            raise FieldError("query", f"{len(text)} characters is over the limit of {self.limits.max_query_chars}")
        return text

    def market(self, market: str) -> str:
        if market not in self.markets:
            shown = market if len(market) <= 40 else market[:40] + "..."
            raise FieldError("market", f"unknown market {shown!r}; known markets: {', '.join(sorted(self.markets))}")
        return market

    def item_ids(self, item_ids: list[str]) -> list[str]:
        limit = self.limits.max_item_ids
        if not item_ids:
            raise FieldError("item_ids", "must list at least one item id")
        if len(item_ids) > limit:
            raise FieldError("item_ids", f"{len(item_ids)} ids is over the limit of {limit} per request; split the request")
        if not _valid_unicode("".join(item_ids)):
            raise FieldError("item_ids", "an id is not valid Unicode (lone surrogate)")
        longest = max(len(i) for i in item_ids)
        if longest > self.limits.max_item_id_chars:
            raise FieldError("item_ids", f"an id of {longest} characters is over the limit of {self.limits.max_item_id_chars}")
        return item_ids

    def bounded(self, field: str, value: int, high: int) -> int:
        if not 1 <= value <= high:
            raise FieldError(field, f"must be between 1 and {high}, got {value}")
        return value


def create_app(scorer: Scorer, *, api_key: str | None = None, limits: Limits | None = None, metrics: Metrics | None = None) -> FastAPI:
    """Build the app around a loaded Scorer. With ``api_key`` set, every endpoint but /healthz needs X-API-Key."""
    limits = limits or Limits()
    metrics = metrics or Metrics()
    checks = _Checks(scorer, limits)
    app = FastAPI(title="hetmoe", version=_version(), docs_url=None, redoc_url=None, openapi_url=None)
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

    @app.exception_handler(FieldError)
    async def _bad_value(_: Request, err: FieldError) -> JSONResponse:
        return _error(422, err.field, str(err))

    @app.exception_handler(HetmoeError)
    async def _hetmoe(_: Request, err: HetmoeError) -> JSONResponse:
        return _error(400, "request", str(err))

    @app.exception_handler(Exception)
    async def _bug(_: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error in request")
        return _error(500, "server", "server: internal error; see the service log")

    @app.post("/score")
    def score(body: ScoreBody) -> JSONResponse:
        result = scorer.score(checks.query(body.query), checks.item_ids(body.item_ids), checks.market(body.market))
        metrics.observe_routing(result.routing.experts)
        return JSONResponse(result.to_dict())

    @app.post("/search")
    def search(body: SearchBody) -> JSONResponse:
        query, market = checks.query(body.query), checks.market(body.market)
        k = checks.bounded("k", body.k, limits.max_k)
        candidates = checks.bounded("candidates", body.candidates, limits.max_candidates)
        result = scorer.search(query, market, k=k, candidates=max(candidates, k))
        metrics.observe_routing(result.routing.experts)
        return JSONResponse(result.to_dict())

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "experts": list(scorer.experts), "markets": sorted(scorer.markets), "items": scorer.n_items}

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker process loads the model named by $HETMOE_MODEL."""
    from hetmoe.online.scorer import Scorer

    model = os.environ.get(MODEL_ENV)
    if not model:
        raise HetmoeError(f"${MODEL_ENV} is not set; start the service with 'hetmoe serve --model DIR'")
    scorer = Scorer.load(model, encode_cores=int(os.environ.get(CORES_ENV) or 0) or None)
    if os.environ.get(WARM_ENV):
        scorer.warm()
    return create_app(scorer, api_key=os.environ.get(API_KEY_ENV) or None)


def _version() -> str:
    from hetmoe import __version__

    return __version__
