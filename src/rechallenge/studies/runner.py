"""Run many replicates on any ``concurrent.futures`` executor, checkpointing each one.

Simulation studies and SBC are lists of independent *tasks* (one replicate of one
scenario with one method); :func:`run_tasks` runs them on an executor and writes each
finished task's record to its own JSON file, ``<out>/replicates/<key>.json``, through a
temporary file and a rename. A rerun reads the files already there and submits only
the missing tasks, so an interrupted study resumes without redoing or losing finished
work, and every task appears exactly once in the results.

Executors
---------
* default: :func:`process_executor`, a ``ProcessPoolExecutor`` (``spawn``) of long-lived
  worker processes. Each worker keeps the nutpie models it has compiled
  (``rechallenge.fit._COMPILED``), so only its first fit of each model structure pays
  the compilation (about 15–25 s); later replicates sample straight away.
* :class:`SerialExecutor`: in the calling process (debugging; reuses the caller's
  compiled models).
* dask.distributed: ``Client(address).get_executor(pure=False)`` (see
  :func:`dask_executor`); start the workers with one thread each (``--nthreads 1``),
  the sampler runs one chain after another in its thread.

As always with ``spawn`` process pools, a script that runs a study on the default
executor must guard its entry point with ``if __name__ == "__main__":``.

Seeds
-----
Every random number of a task comes from seeds derived with
``numpy.random.SeedSequence(seed, spawn_key=(h(scenario), replicate, …))``
(:func:`derive_seed`, ``h`` a hash of the name), so a replicate's data and fit depend on
the study seed, its scenario name and its number only, never on the order in which
workers pick tasks up.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import os
import re
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .._resources import atomic_write_text

__all__ = ["Task", "SerialExecutor", "derive_seed", "name_key", "process_executor", "dask_executor",
           "run_tasks", "read_checkpoint", "checkpoint_path", "write_json"]

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")


@dataclass(frozen=True)
class Task:
    """One unit of work: ``key`` names its checkpoint (``a/b/r00001``), ``payload`` is
    the (picklable) argument of the task function."""

    key: str
    payload: Any


def name_key(name: str) -> int:
    """A stable 32-bit integer for a name (first 4 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(str(name).encode()).digest()[:4], "little")


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 32-bit seed from the study seed and a path of keys (names or integers).

    ``SeedSequence(seed, spawn_key=keys)`` (names hashed with :func:`name_key`), so the
    seed of ``("base", 17, "data")`` is the same whichever worker runs it and whenever.
    """
    spawn_key = tuple(k if isinstance(k, (int, np.integer)) else name_key(k) for k in keys)
    return int(np.random.SeedSequence(int(seed), spawn_key=spawn_key).generate_state(1, np.uint32)[0])


class SerialExecutor(cf.Executor):
    """Runs each submitted call at once, in the calling process (an ``Executor``)."""

    _max_workers = 1

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 -- delivered through the future
            future.set_exception(exc)
        return future


def quiet_worker() -> None:
    """Initializer of pool workers: silence per-fit chatter (warnings and sampler logs;
    unreliable fits are recorded instead)."""
    warnings.simplefilter("ignore")
    for name in ("pymc", "pymc.sampling", "nutpie", "arviz", "pytensor", "numba",
                 "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)


def process_executor(workers: int = 2) -> cf.ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` long-lived ``spawn`` processes."""
    import multiprocessing

    return cf.ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context("spawn"),
                                  initializer=quiet_worker)


def dask_executor(address: str | Any):
    """``(executor, client)`` for a dask.distributed scheduler address or ``Client``.

    Close the client when done (``client.close()``) if you passed an address.
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        from ..errors import RechallengeError
        raise RechallengeError("the dask scheduler needs dask.distributed "
                               "(pip install 'rechallenge[dask]')") from None
    client = address if isinstance(address, Client) else Client(address)
    return client.get_executor(pure=False), client


def _capacity(executor: cf.Executor) -> int:
    workers = getattr(executor, "_max_workers", None)
    if workers is None and hasattr(executor, "_client"):  # dask ClientExecutor
        try:
            workers = sum(executor._client.nthreads().values())
        except Exception:  # pragma: no cover
            workers = None
    return max(1, int(workers or 8))


# --------------------------------------------------------------------------- checkpoints


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON, atomically (NaN allowed)."""
    atomic_write_text(path, json.dumps(obj, default=_json_default, indent=1) + "\n")


def checkpoint_path(out_dir: str | Path, key: str) -> Path:
    """``<out_dir>/replicates/<key>.json``."""
    if not _KEY.match(key):
        raise ValueError(f"task key {key!r}: names of letters, digits, '_', '.', '-' separated by '/'")
    return Path(out_dir) / "replicates" / f"{key}.json"


def read_checkpoint(out_dir: str | Path, key: str) -> dict | None:
    """The record of a finished task, or ``None`` (also for an unreadable file, which is
    then redone: only complete files are ever renamed into place)."""
    path = checkpoint_path(out_dir, key)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def _call(fn: Callable[[Any], Mapping[str, Any]], key: str, payload: Any) -> dict:
    """Run one task in a worker; a failure becomes a record with ``status: error``.

    Warnings (e.g. unreliable fits, which the record reports) are silenced for the call
    only, so a :class:`SerialExecutor` leaves the caller's warning filters alone.
    """
    started = time.time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record = dict(fn(payload))
        record.setdefault("status", "ok")
    except Exception as exc:  # noqa: BLE001 -- reported in the record and the summary
        record = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=6)}
    finished = time.time()
    record.update(key=key, pid=os.getpid(), host=socket.gethostname(), started_at=started,
                  finished_at=finished, seconds=finished - started)
    return record


def run_tasks(tasks: Iterable[Task], fn: Callable[[Any], Mapping[str, Any]], out_dir: str | Path, *,
              executor: cf.Executor | None = None, workers: int = 2, max_pending: int | None = None,
              progress: bool = True, desc: str = "replicates", retry_failed: bool = True,
              on_result: Callable[[dict], None] | None = None) -> dict[str, dict]:
    """Run the tasks not yet checkpointed in ``out_dir`` and return every task's record.

    Parameters
    ----------
    tasks
        Tasks with unique keys.
    fn
        Module-level function ``fn(payload) -> dict`` (JSON-serialisable values), run in
        the workers. Exceptions it raises are recorded (``status: "error"``) rather than
        stopping the study.
    out_dir
        Directory of the checkpoints (``replicates/<key>.json``).
    executor
        Any ``concurrent.futures.Executor``; default a new :func:`process_executor` of
        ``workers`` processes, shut down at the end.
    max_pending
        Tasks submitted ahead of the finished ones (default twice the executor's
        workers): an interruption then leaves little work in flight.
    retry_failed
        Run again tasks whose checkpoint records an error (default); ``False`` keeps them.
    on_result
        Called in this process with each new record after it is checkpointed.

    Returns
    -------
    dict
        ``{key: record}`` in task order. Records carry ``key``, ``status``, ``pid``,
        ``host``, ``started_at``, ``finished_at`` and ``seconds`` besides ``fn``'s output.

    Notes
    -----
    If the loop is interrupted (KeyboardInterrupt, an error in ``on_result``, a broken
    executor), tasks that have already finished are checkpointed before the exception
    propagates; pending ones are cancelled and run on the next call.
    """
    # tqdm.auto picks the notebook widget and warns when ipywidgets is absent, even for a
    # disabled bar: import it only when a bar is shown.
    if progress:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    tasks = list(tasks)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    done: dict[str, dict] = {}
    todo: list[Task] = []
    for task in tasks:
        record = read_checkpoint(out_dir, task.key)
        if record is not None and (record.get("status") == "ok" or not retry_failed):
            done[task.key] = record
        else:
            todo.append(task)
    if not todo:
        return {k: done[k] for k in keys}
    own = executor is None
    if own:
        executor = process_executor(workers)
    window = max_pending or 2 * _capacity(executor)
    pending: dict[cf.Future, Task] = {}
    queue = iter(todo)
    bar = tqdm(total=len(tasks), initial=len(done), desc=desc, unit="fit", disable=not progress,
               dynamic_ncols=True)

    def collect(future: cf.Future) -> None:
        task = pending.pop(future)
        record = future.result()
        write_json(checkpoint_path(out_dir, task.key), record)
        done[task.key] = record
        bar.update(1)
        if on_result is not None:
            on_result(record)

    ok = False
    try:
        while True:
            while len(pending) < window:
                task = next(queue, None)
                if task is None:
                    break
                pending[executor.submit(_call, fn, task.key, task.payload)] = task
            if not pending:
                break
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                collect(future)
        ok = True
    finally:
        if not ok:  # keep what has finished, cancel the rest
            for future in list(pending):
                if future.done() and not future.cancelled() and future.exception() is None:
                    try:
                        task = pending.pop(future)
                        write_json(checkpoint_path(out_dir, task.key), future.result())
                    except Exception:  # pragma: no cover
                        pass
                else:
                    future.cancel()
        bar.close()
        if own:
            executor.shutdown(wait=ok, cancel_futures=not ok)
    return {k: done[k] for k in keys}


def summarise_failures(records: Mapping[str, Mapping[str, Any]]) -> tuple[int, str | None]:
    """Number of failed records and the first error message."""
    failed = [r for r in records.values() if r.get("status") != "ok"]
    return len(failed), (failed[0].get("error") if failed else None)


def finite_or_nan(x: Any) -> float:
    """``float(x)``, NaN for ``None`` or non-numbers."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return math.nan
    return value
