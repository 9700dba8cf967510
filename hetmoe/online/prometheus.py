"""Prometheus text exposition for the service, written by hand to avoid a dependency for four metric families.

Counters and histograms live in one thread-safe registry per process: FastAPI runs sync endpoints in a thread
pool, so every update takes a lock (cheap next to a request). With ``--http-workers N`` each worker keeps its own
registry and ``/metrics`` shows the worker that answered.
"""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

# Seconds; spans a cached /score (well under 1 ms) to a slow uncached /search.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    """Label values may come from request paths; escape them as the exposition format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    return "{" + body + "}" if body else ""


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Metrics:
    """Request counts, latency histogram, errors and routing counts per expert."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._errors: dict[tuple[str, str], int] = defaultdict(int)
        self._routed: dict[str, int] = defaultdict(int)
        # endpoint -> [per-bucket counts..., +Inf count], and running sums
        self._hist: dict[str, list[int]] = {}
        self._hist_sum: dict[str, float] = defaultdict(float)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and put its latency in the histogram of its endpoint."""
        slot = bisect.bisect_left(self._buckets, seconds)
        with self._lock:
            self._requests[(endpoint, method, str(status))] += 1
            counts = self._hist.setdefault(endpoint, [0] * (len(self._buckets) + 1))
            counts[slot] += 1
            self._hist_sum[endpoint] += seconds
            if status >= 400:
                self._errors[(endpoint, "client" if status < 500 else "server")] += 1

    def observe_routing(self, experts: Iterable[str]) -> None:
        """Count how often each expert was routed to: the signal for sizing and warming encoders."""
        with self._lock:
            for expert in experts:
                self._routed[expert] += 1

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        with self._lock:
            requests = dict(self._requests)
            errors = dict(self._errors)
            routed = dict(self._routed)
            hist = {k: list(v) for k, v in self._hist.items()}
            sums = dict(self._hist_sum)
        lines = [
            "# HELP hetmoe_requests_total HTTP requests by endpoint, method and status code.",
            "# TYPE hetmoe_requests_total counter",
        ]
        for (endpoint, method, status), n in sorted(requests.items()):
            lines.append(f"hetmoe_requests_total{_labels([('endpoint', endpoint), ('method', method), ('status', status)])} {n}")
        lines += [
            "# HELP hetmoe_request_errors_total Requests answered with 4xx (client) or 5xx (server).",
            "# TYPE hetmoe_request_errors_total counter",
        ]
        for (endpoint, kind), n in sorted(errors.items()):
            lines.append(f"hetmoe_request_errors_total{_labels([('endpoint', endpoint), ('kind', kind)])} {n}")
        lines += [
            "# HELP hetmoe_request_latency_seconds Request latency by endpoint.",
            "# TYPE hetmoe_request_latency_seconds histogram",
        ]
        for endpoint, counts in sorted(hist.items()):
            cumulative = 0
            for bound, n in zip(self._buckets, counts):
                cumulative += n
                le = _labels([("endpoint", endpoint), ("le", _number(bound))])
                lines.append(f"hetmoe_request_latency_seconds_bucket{le} {cumulative}")
            cumulative += counts[-1]
            lines.append(f"hetmoe_request_latency_seconds_bucket{_labels([('endpoint', endpoint), ('le', '+Inf')])} {cumulative}")
            lines.append(f"hetmoe_request_latency_seconds_sum{_labels([('endpoint', endpoint)])} {sums[endpoint]!r}")
            lines.append(f"hetmoe_request_latency_seconds_count{_labels([('endpoint', endpoint)])} {cumulative}")
        lines += [
            "# HELP hetmoe_routed_total Queries routed to each expert (one count per routed expert per query).",
            "# TYPE hetmoe_routed_total counter",
        ]
        for expert, n in sorted(routed.items()):
            lines.append(f"hetmoe_routed_total{_labels([('expert', expert)])} {n}")
        return "\n".join(lines) + "\n"
