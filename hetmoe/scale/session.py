"""One Ray session per command and one actor-pool map over it, shared by ``embed --engine ray`` and ``score --engine ray``.

Why an actor pool: a model is loaded once per actor and then serves many work units (store chunks, pair blocks); Ray
Data streams the units to whichever actor is free, so a slow worker simply takes fewer. Why a dead worker becomes one
line: every unit writes its result atomically before it reports, so whatever a killed worker or a lost cluster leaves
behind is complete and the next run of the same command skips it.
"""
from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hetmoe.errors import HetmoeError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
DIED = ("RayActorError", "ActorDiedError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError")


@dataclass(frozen=True)
class PoolSpec:
    """How many actors, what each reserves, and how often Ray restarts one that died before the run gives up."""

    workers: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    retries: int = 3
    address: str | None = None  # None: start a local Ray on this machine

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise HetmoeError(f"--ray-workers {self.workers}: need at least 1 Ray worker")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0 or self.retries < 0:
            raise HetmoeError("--cpus-per-worker must be > 0, --gpus-per-worker and retries >= 0")

    @property
    def threads(self) -> int:
        """CPU threads an actor's model may use: its reserved CPUs, so actors on one node do not oversubscribe it."""
        return max(1, int(self.cpus_per_worker))


@contextmanager
def ray_session(address: str | None) -> Iterator[float]:
    """Join ``address`` or start a local Ray (no dashboard); reuses a session already open in this process (tests,
    notebooks) and leaves it open. Yields the seconds the start took (Ray's fixed cost, reported by the bench)."""
    import ray

    if ray.is_initialized():
        yield 0.0
        return
    began = time.perf_counter()
    options: dict[str, Any] = {"address": address} if address else {"include_dashboard": False}
    try:
        ray.init(logging_level=logging.WARNING, **options)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise HetmoeError(f"cannot start or join Ray at {address or 'a local cluster'}: {err}; check --address") from err
    started = time.perf_counter() - began
    log.info("ray: %s in %.1f s, resources %s", f"joined {address}" if address else "started a local cluster", started,
             {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")})
    try:
        yield started
    finally:
        ray.shutdown()


def pool_size(spec: PoolSpec) -> int:
    """``spec.workers``, else as many actors as the cluster has room for."""
    import ray

    if spec.workers:
        return spec.workers
    resources = ray.cluster_resources()
    if spec.gpus_per_worker > 0:
        fit = int(resources.get("GPU", 0) // spec.gpus_per_worker)
        if fit < 1:
            raise HetmoeError(f"the Ray cluster has {resources.get('GPU', 0)} GPUs, fewer than --gpus-per-worker "
                              f"{spec.gpus_per_worker}; lower it or join a GPU cluster with --address")
        return fit
    return max(1, int(resources.get("CPU", 1) // spec.cpus_per_worker))


def map_units(units: Sequence[pa.Table], worker: type, args: tuple[Any, ...], spec: PoolSpec) -> Iterator[dict[str, Any]]:
    """Stream each unit (one Arrow table, one block) through a fixed pool of ``worker(*args)`` actors and yield every
    result row as it arrives. A worker that died past its retries ends the run with one resumable-error line."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines, after ray.data set them up
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows one tqdm bar over the whole job
    size = min(pool_size(spec), len(units))
    with warnings.catch_warnings():  # retry bounds have no named parameter in Ray 2.60 (pinned) yet
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        results = ray.data.from_arrow(list(units)).map_batches(
            worker, fn_constructor_args=args, batch_size=None, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=spec.cpus_per_worker,
            num_gpus=spec.gpus_per_worker or None, max_restarts=spec.retries, max_task_retries=spec.retries,
        )
    try:
        yield from results.iter_rows()
    except Exception as err:  # Ray wraps worker errors in several types: keep user errors and deaths to one line
        user = _user_error(err)
        if user is None:
            raise
        raise user from err


def _user_error(err: BaseException) -> HetmoeError | None:
    """The HetmoeError a worker raised, or one for a worker that died; None for anything else (a bug: keep it)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen):
            continue
        seen.append(cur)
        todo += [cur.__cause__, cur.__context__, getattr(cur, "cause", None)]
    for cur in seen:
        if isinstance(cur, HetmoeError) and "RayTaskError" not in type(cur).__name__:  # not Ray's traceback-wrapped copy
            return HetmoeError(str(cur))
    died = [cur for cur in seen if any(t.__name__ in DIED for t in type(cur).__mro__)]
    if died:
        return HetmoeError(f"a Ray worker died ({type(died[0]).__name__}); what the workers finished is kept: "
                           "run the same command again to resume")
    return None
