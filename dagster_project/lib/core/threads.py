"""Model fitting runs single-threaded in its native libraries (OpenBLAS, OpenMP).

The fits Strata runs are small and repeated: KMeans on bounded samples (each k candidate,
each bootstrap refit), L-BFGS-B over a few parameters. Each step of those is too short for
the thread hand-offs to pay. Measured on this 2-core machine, ten KMeans(5, n_init=4) fits
take 0.3 s on one thread against 0.4 s on two for 2,500 users, 4.5 s against 10.3 s for
100,000, and 0.3 s against 2.0 s for 2,500 when another process uses a core (as in the test
suite, or when dbt works beside the run). L-BFGS-B's dot products are as latency-bound: a
1M-customer BG/NBD fit takes 0.54 s on one BLAS thread against 0.7-0.9 s (and twice the CPU)
on two, a 40-row fit 3 ms against up to 200 ms when other processes compete for the cores.
The run's parallelism comes from DuckDB and polars.
"""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any

from threadpoolctl import threadpool_limits


class _SingleThreaded(ContextDecorator):
    def __init__(self, user_api: str | None) -> None:
        self.user_api = user_api
        self._limits: Any = None

    def _recreate_cm(self) -> _SingleThreaded:  # a fresh one per decorated call
        return _SingleThreaded(self.user_api)

    def __enter__(self) -> _SingleThreaded:
        # threadpoolctl limits the libraries loaded when the block starts, and the fits load
        # scikit-learn (its OpenMP runtime) and SciPy (its own OpenBLAS) lazily: load them
        # first, or the KMeans of a run's first fit would still use every core
        import scipy.linalg  # noqa: F401
        import sklearn.cluster  # noqa: F401

        self._limits = threadpool_limits(limits=1, user_api=self.user_api)
        return self

    def __exit__(self, *exc: object) -> None:
        self._limits.restore_original_limits()


def single_threaded(user_api: str | None = None) -> ContextDecorator:
    """One native thread while inside (``user_api``: "blas" or "openmp" only; None: both).

    A context manager and a decorator; the limits are set on entry, not when this is called,
    and the previous ones come back on exit.
    """
    return _SingleThreaded(user_api)
