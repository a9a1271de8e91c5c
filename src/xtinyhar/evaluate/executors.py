"""Where the tasks of a grid of runs execute: here, in a local process pool, or on a Ray
cluster. :func:`xtinyhar.evaluate.cv.schedule_folds` is the one scheduler (order, teacher
before student, resume, ``done.json``); an executor only runs the callables it is handed and
gives back their results (docs/design.md, "Scheduling a grid of runs").

An executor's tasks are ``fn(cache, *args)``: ``cache`` is the token cache named by
``cache_key``, which each executor sends to its workers once (a process pool through its
initializer, Ray through its object store). ``shares_files`` says whether the workers see
the driver's file system; when they do not (Ray), a task gets its fold folder's files as
bytes and returns the files it leaves, and the driver writes them into its run folder.

Ray is imported only by :class:`RayExecutor` (the ``ray`` extra); its usage statistics are
switched off before the import, its dashboard is not started, and a Ray instance started
on this machine (``--address local``) listens on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Hashable
from typing import Any

from xtinyhar.errors import XTinyHARError

log = logging.getLogger(__name__)

RAY_EXTRA = "ray"
RAY_RETRIES = 3          # a task whose worker process or machine dies is run again this often
LOCAL = "local"          # --address local: a private Ray instance on this machine
CONNECT_TIMEOUT_S = 10.0


class WorkerLost(XTinyHARError):
    """A worker process (or its machine) died while it ran a task, and was not replaced."""


Outcome = tuple[Hashable, bool, Any]   # (handle, succeeded, result or the exception)


def setup_worker(threads: int, log_level: int) -> None:
    """A worker's state before it trains: its thread budget, its logging level, no progress
    bars (the driver shows the grid's)."""
    import torch

    from xtinyhar.train import loop
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xtinyhar").setLevel(log_level)
    loop.SHOW_PROGRESS = False
    loop.THREADS = threads
    torch.set_num_threads(threads)


class Executor:
    """Runs ``fn(cache, *args)`` callables for the scheduler. ``jobs`` divides the threads of
    a model (``train.threads // jobs`` each); ``capacity()`` is how many tasks the scheduler
    keeps in flight; ``wait()`` blocks until at least one task has finished and returns
    ``(handle, succeeded, result or exception)`` for each finished one."""

    jobs: int = 1
    shares_files: bool = True
    name: str = "executor"

    def start(self, caches: dict[str, Any], threads: int) -> None:
        raise NotImplementedError

    def capacity(self) -> int:
        raise NotImplementedError

    def submit(self, fn: Callable, cache_key: str, *args) -> Hashable:
        raise NotImplementedError

    def wait(self) -> list[Outcome]:
        raise NotImplementedError

    def close(self, cancel: bool = False) -> None:
        """Release the workers; ``cancel`` stops tasks still running (an error or Ctrl-C)."""


class InlineExecutor(Executor):
    """Each task runs in this process when it is submitted, one after another (``--jobs 1``)."""

    name = "this process"

    def start(self, caches: dict[str, Any], threads: int) -> None:
        self._caches, self._done, self._count = caches, [], 0

    def capacity(self) -> int:
        return 1

    def submit(self, fn: Callable, cache_key: str, *args) -> Hashable:
        self._count += 1
        try:
            self._done.append((self._count, True, fn(self._caches[cache_key], *args)))
        except Exception as exc:    # noqa: BLE001 - handed to the scheduler, which raises it
            self._done.append((self._count, False, exc))
        return self._count

    def wait(self) -> list[Outcome]:
        done, self._done = self._done, []
        return done


_WORKER_CACHES: dict[str, Any] = {}   # a pool worker's token caches, sent once by its initializer


def _start_pool_worker(threads: int, log_level: int, caches: dict[str, Any]) -> None:
    """Initializer of a pool worker: :func:`setup_worker`, the token caches, and Ctrl-C left
    to the parent (which stops the pool)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_worker(threads, log_level)
    _WORKER_CACHES.clear()
    _WORKER_CACHES.update(caches)


def _pool_call(fn: Callable, cache_key: str, *args):
    return fn(_WORKER_CACHES[cache_key], *args)


class ProcessExecutor(Executor):
    """``jobs`` spawned worker processes on this machine (``--jobs N``)."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.name = f"{jobs} local worker processes"

    def start(self, caches: dict[str, Any], threads: int) -> None:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")   # no fork of a process holding torch threads
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=context, initializer=_start_pool_worker,
            initargs=(threads, logging.getLogger("xtinyhar").getEffectiveLevel(), caches))
        self._running: set = set()

    def capacity(self) -> int:
        return self.jobs

    def submit(self, fn: Callable, cache_key: str, *args) -> Hashable:
        future = self._pool.submit(_pool_call, fn, cache_key, *args)
        self._running.add(future)
        return future

    def wait(self) -> list[Outcome]:
        import concurrent.futures
        from concurrent.futures.process import BrokenProcessPool

        finished, _ = concurrent.futures.wait(self._running, return_when=concurrent.futures.FIRST_COMPLETED)
        outcomes = []
        for future in finished:
            self._running.discard(future)
            try:
                outcomes.append((future, True, future.result()))
            except BrokenProcessPool:
                outcomes.append((future, False, WorkerLost(
                    "a worker process died (out of memory?); rerun with --resume, or with fewer --jobs")))
            except Exception as exc:   # noqa: BLE001 - handed to the scheduler, which raises it
                outcomes.append((future, False, exc))
        return outcomes

    def close(self, cancel: bool = False) -> None:
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        if cancel:
            processes = list((pool._processes or {}).values())   # before shutdown clears it
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:                           # running tasks stop too
                process.terminate()
        else:
            pool.shutdown()


def ray_address(address: str | None) -> str | None:
    """The Ray cluster to use: ``address``, else the ``RAY_ADDRESS`` environment variable,
    else None (no Ray: this machine's process pool)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def import_ray():
    """``ray``, with its usage statistics switched off first; a one-line error naming the
    extra when it is not installed."""
    import sys

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    imported = sys.modules.get("ray") is not None
    token = _token_if_given()      # read by Ray when it is imported
    try:
        import ray
    except ImportError:
        raise XTinyHARError(f"--address needs Ray, which is not installed: pip install "
                            f"'xtinyhar[{RAY_EXTRA}]'") from None
    if token and imported:         # imported earlier: Ray's own way to take the mode up now
        try:
            from ray._raylet import Config
            Config.initialize("")
        except Exception:   # noqa: BLE001 - another Ray version: connecting names the problem
            pass
    return ray


def _check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` nothing listens on within a few seconds (``ray.init`` would
    retry for minutes); other forms (``auto``, ``ray://``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise XTinyHARError(f"--address {address}: no Ray cluster answers there "
                            f"({exc.strerror or exc}); start one with `ray start --head "
                            "--disable-usage-stats` or check the address") from None


def _token_if_given() -> bool:
    """Authenticate with a token when one is at hand (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as ``ray start`` finds it) and
    ``RAY_AUTH_MODE`` is not set: a cluster started with token authentication refuses a
    driver without it, and one without authentication accepts either."""
    from pathlib import Path

    if "RAY_AUTH_MODE" in os.environ:
        return False
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


def _ray_call(fn: Callable, threads: int, log_level: int, cache, *args):
    """A Ray task: the worker's setup, then ``fn`` on the cache resolved from the object store."""
    setup_worker(threads, log_level)
    return fn(cache, *args)


class RayExecutor(Executor):
    """Tasks on a Ray cluster (``--address HOST:PORT``, ``auto``, or ``local`` for a private
    instance on this machine with ``jobs`` CPUs). Each task asks Ray for the CPUs it trains
    on; as many run at once as the cluster's CPUs hold. The token caches are put in the
    object store once; a task whose worker dies is run again (``retries`` times)."""

    shares_files = False

    def __init__(self, address: str, jobs: int = 1, retries: int = RAY_RETRIES):
        self.address, self.jobs, self.retries = address, jobs, retries
        self.name = f"Ray at {address}"
        self._owns_connection = False

    def start(self, caches: dict[str, Any], threads: int) -> None:
        ray = import_ray()
        self._ray = ray
        if not ray.is_initialized():
            quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
            if self.address == LOCAL:
                ray.init(address="local", num_cpus=self.jobs * threads, include_dashboard=False,
                         _node_ip_address="127.0.0.1", **quiet)
            else:
                _check_reachable(self.address)
                try:
                    ray.init(address=self.address, **quiet)
                except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise XTinyHARError(f"--address {self.address}: cannot join the Ray cluster "
                                        f"({reason[:160]}); a cluster with token authentication "
                                        "needs its token here too (RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
            self._owns_connection = True
        self._threads = threads
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < threads:
            raise XTinyHARError(f"--address {self.address}: the cluster has {cpus} CPU(s), a task "
                                f"trains on {threads} thread(s) (train.threads // --jobs); add "
                                "machines or pass a larger --jobs")
        self._refs = {key: ray.put(cache) for key, cache in caches.items()}   # once per cache
        self._remote = ray.remote(_ray_call).options(num_cpus=threads, max_retries=self.retries,
                                                      retry_exceptions=False)
        self._level = logging.getLogger("xtinyhar").getEffectiveLevel()
        self._running: set = set()

    def capacity(self) -> int:
        """The tasks the cluster can run at once now (its CPUs // a task's), so that the
        scheduler, not Ray's queue, decides which ready task goes next."""
        cpus = int(self._ray.cluster_resources().get("CPU", 0))
        return max(1, cpus // self._threads)

    def submit(self, fn: Callable, cache_key: str, *args) -> Hashable:
        ref = self._remote.remote(fn, self._threads, self._level, self._refs[cache_key], *args)
        self._running.add(ref)
        return ref

    def wait(self) -> list[Outcome]:
        ray = self._ray
        ready, _ = ray.wait(list(self._running), num_returns=1)
        outcomes = []
        for ref in ready:
            self._running.discard(ref)
            try:
                outcomes.append((ref, True, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:   # the task raised: its own error
                cause = getattr(exc, "cause", None)
                outcomes.append((ref, False, cause if isinstance(cause, Exception) else exc))
            except ray.exceptions.RayError as exc:       # its worker or machine died, retries spent
                reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
                outcomes.append((ref, False, WorkerLost(
                    f"a Ray worker died {self.retries + 1} times running it ({reason}); rerun with --resume")))
        return outcomes

    def close(self, cancel: bool = False) -> None:
        ray = getattr(self, "_ray", None)
        if ray is None:
            return
        if cancel:
            for ref in getattr(self, "_running", ()):
                try:
                    ray.cancel(ref, force=True)
                except Exception:   # noqa: BLE001 - finished meanwhile, or the cluster is gone
                    pass
        if self._owns_connection:
            ray.shutdown()
            self._owns_connection = False


def check_address(address: str | None) -> None:
    """Before any work: with a Ray address (or ``RAY_ADDRESS``), Ray must be installed and,
    for ``HOST:PORT``, something must listen there; one-line errors otherwise."""
    address = ray_address(address)
    if address:
        import_ray()
        if address != LOCAL:
            _check_reachable(address)


def make_executor(jobs: int = 1, address: str | None = None) -> Executor:
    """The executor ``--jobs`` and ``--address`` ask for: Ray when an address is given (or
    ``RAY_ADDRESS`` is set), else ``jobs`` local worker processes, else this process."""
    if jobs < 1:
        raise XTinyHARError(f"--jobs {jobs}: must be at least 1")
    address = ray_address(address)
    if address:
        return RayExecutor(address, jobs=jobs)
    return ProcessExecutor(jobs) if jobs > 1 else InlineExecutor()
