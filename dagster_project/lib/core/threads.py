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

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits


@contextmanager
def single_threaded(user_api: str | None = None) -> Iterator[None]:
    """One native thread while inside (``user_api``: "blas" or "openmp" only; None: both).

    A context manager and, as ``@single_threaded()``, a decorator (fresh limits per call); the
    previous limits come back on exit.
    """
    # threadpoolctl limits the libraries loaded when the block starts, and the fits load SciPy
    # (its own OpenBLAS) and scikit-learn (its OpenMP runtime) lazily: load them first, or the
    # KMeans of a run's first fit would still use every core
    import scipy.linalg  # noqa: F401

    if user_api != "blas":
        import sklearn.cluster  # noqa: F401
    with threadpool_limits(limits=1, user_api=user_api):
        yield
