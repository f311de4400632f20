"""The jobs of a sweep (builds, syntheses, rtlsims, training runs) on Ray: an embedded local Ray
by default, an existing cluster with ``address`` (``ray://host:10001`` or ``host:6379``).

One executor for every sweep: ``python -m build_flows.explore`` (foldings of a net) and
``python -m models.benchmark --jobs`` (methods and seeds) both call :func:`run`. A job is a
module-level function and its arguments; each takes ``cpus`` of Ray's CPUs, so ``jobs`` local
CPUs run ``jobs / cpus`` at once. On a cluster every node needs the same checkout and
environment (the functions are imported there by name) and the paths the jobs write must be
shared storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: object store of an embedded Ray (bytes): the jobs pass paths and small records, not arrays
OBJECT_STORE_BYTES = 256 * 2**20


#: an embedded Ray shares the machine with the jobs it runs: on a loaded machine (every core
#: busy with builds) its own node missed the default heartbeats and was declared dead; allow
#: a minute of silence
HEALTH_CHECK = {"health_check_period_ms": 3000, "health_check_timeout_ms": 10000,
                "health_check_failure_threshold": 20}


class JobError(RuntimeError):
    """A job failed; the message names it and carries its error."""


@dataclass
class Outcome:
    """One job's name, its return value, or the error that ended it (``error`` not None)."""

    name: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def _start(jobs: int, address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so shuts it down)."""
    try:
        import ray
    except ImportError:
        raise JobError("Ray is not installed: run `make setup`") from None
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise JobError(f"--ray-address {address}: cannot connect to a Ray cluster there "
                           f"({exc})") from None
        log.info("Ray: connected to the cluster at %s (%s CPUs)", address,
                 ray.cluster_resources().get("CPU"))
    else:
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                 object_store_memory=OBJECT_STORE_BYTES, _system_config=HEALTH_CHECK)
        log.info("Ray: embedded local instance with %d CPUs", jobs)
    return True


def run(fn: Callable[..., Any], calls: Sequence[tuple[str, tuple[Any, ...]]], jobs: int = 1,
        address: str | None = None, cpus: float = 1.0) -> list[Outcome]:
    """``fn(*args)`` for every ``(name, args)`` of ``calls`` as Ray tasks; the outcomes in the
    order of ``calls``. Progress is logged as jobs finish; a failed job's error is kept in its
    outcome and the others go on."""
    if not calls:
        return []
    if jobs < 1:
        raise JobError(f"jobs {jobs}: give at least 1")
    started = _start(jobs, address)
    import ray

    try:
        task = ray.remote(num_cpus=cpus, max_retries=0)(fn)
        t0 = time.time()
        refs = {task.remote(*args): i for i, (_, args) in enumerate(calls)}
        out: list[Outcome | None] = [None] * len(calls)
        pending = list(refs)
        log.info("%d jobs queued (%s)", len(calls), ", ".join(n for n, _ in calls[:4])
                 + (", ..." if len(calls) > 4 else ""))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            name = calls[i][0]
            try:
                out[i] = Outcome(name, ray.get(done[0]), seconds=time.time() - t0)
                log.info("finished %s (%d of %d done, %.0f s)", name,
                         sum(o is not None for o in out), len(calls), time.time() - t0)
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                out[i] = Outcome(name, error=f"{type(cause).__name__}: {cause}",
                                 seconds=time.time() - t0)
                log.error("%s failed: %s", name, out[i].error)
        return [o for o in out if o is not None]
    finally:
        if started:
            ray.shutdown()


def values(outcomes: Sequence[Outcome]) -> list[Any]:
    """The outcomes' values; JobError naming every failed job."""
    bad = [o for o in outcomes if o.error is not None]
    if bad:
        raise JobError(f"{len(bad)} of {len(outcomes)} jobs failed: "
                       + "; ".join(f"{o.name}: {o.error}" for o in bad))
    return [o.value for o in outcomes]
