"""Great Expectations runner: validate a pandas DataFrame against a suite in ``expectations/``.

Pure library code (no Dagster): the asset checks call :func:`validate_frame` and turn the
:class:`SuiteResult` into an ``AssetCheckResult``. Design choices, and why:

- Suites are reviewable JSON files in GX 1.x's own suite format (``name``, ``expectations``
  with ``type`` / ``kwargs`` / ``severity`` / ``description``), so a reviewer reads them and
  GX loads them without translation.
- GX runs in an ephemeral context on pandas DataFrames: GX's SQL data source fails on DuckDB
  (upstream issues #11579, #10738) and a file context would write state into the repo.
- ``great_expectations`` takes seconds to import, so it is imported inside functions only and
  the context is built once per process (:func:`_runtime`): loading the Dagster code location
  never pays for it and a run pays for it once.
- Partition windows reach the suites as GX suite parameters (``{"$PARAMETER": "name"}`` in a
  kwarg, values passed at validation time as ``expectation_parameters``). A suite's own
  ``suite_parameters`` block holds defaults (``max_rows``) that the caller may override.
- Severity is GX's native expectation field (``critical`` / ``warning`` / ``info``), mapped to
  ``error`` / ``warn`` / ``info`` here because that is what a Dagster check speaks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_SIZE = 10
"""Offending values kept per failed expectation (distinct, in order of appearance)."""

_PARTIAL_UNEXPECTED_COUNT = 50  # GX sample size before de-duplication down to SAMPLE_SIZE
_PARAMETER_KEY = "$PARAMETER"
_SEVERITY_ALIASES = {
    "critical": "critical",
    "error": "critical",
    "warning": "warning",
    "warn": "warning",
    "info": "info",
}
_SEVERITY_OUT = {"critical": "error", "warning": "warn", "info": "info"}


class SuiteSpecError(ValueError):
    """A suite file is malformed, or a validation lacks a parameter the suite needs."""


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, with the evidence a person needs to act on it."""

    expectation: str
    """GX expectation type, e.g. ``expect_column_values_to_be_unique``."""
    column: str | None
    """The column it checks (``column``, or ``column_A,column_B`` / a column list), or None."""
    severity: str
    """``error`` (blocks downstream), ``warn`` or ``info``."""
    observed: str
    """Short human-readable observation, e.g. ``2 of 40 rows unexpected (5.00%)``."""
    unexpected_sample: list = field(default_factory=list)
    """Up to :data:`SAMPLE_SIZE` distinct offending values, JSON-serialisable."""
    description: str | None = None
    """The expectation's ``description`` from the suite file (says what it means)."""


@dataclass(frozen=True)
class SuiteResult:
    """Outcome of validating one frame against one suite."""

    suite: str
    success: bool
    """True when no error-severity expectation failed (warnings do not block)."""
    evaluated: int
    failed: list[FailedExpectation]
    has_error: bool
    has_warning: bool

    def to_metadata(self) -> dict[str, Any]:
        """JSON-serialisable summary, suitable for Dagster check/asset metadata."""
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed_count": len(self.failed),
            "errors": sum(f.severity == "error" for f in self.failed),
            "warnings": sum(f.severity == "warn" for f in self.failed),
            "failed": [asdict(f) for f in self.failed],
        }


def load_suite_spec(name: str, expectations_dir: Path) -> dict[str, Any]:
    """Read ``<expectations_dir>/<name>.json`` and check its shape, without importing GX.

    Severity is normalised to GX's native values; ``error``/``warn`` and a legacy
    ``meta.severity`` are accepted so a hand-written suite reads naturally.

    Raises:
        FileNotFoundError: no such suite file.
        SuiteSpecError: the file is not a suite we can run.
    """
    path = Path(expectations_dir) / f"{name}.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise SuiteSpecError(f"{path}: a suite is a JSON object")
    if spec.get("name") != name:
        raise SuiteSpecError(f"{path}: suite name {spec.get('name')!r} must equal {name!r}")
    expectations = spec.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise SuiteSpecError(f"{path}: 'expectations' must be a non-empty list")
    defaults = spec.get("suite_parameters") or {}
    if not isinstance(defaults, dict):
        raise SuiteSpecError(f"{path}: 'suite_parameters' must be an object")

    normalised = []
    for i, exp in enumerate(expectations):
        where = f"{path}: expectation #{i}"
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str):
            raise SuiteSpecError(f"{where}: needs a string 'type'")
        if not isinstance(exp.get("kwargs"), dict):
            raise SuiteSpecError(f"{where} ({exp['type']}): needs an object 'kwargs'")
        exp = dict(exp)
        meta = dict(exp.get("meta") or {})
        raw_severity = exp.get("severity", meta.pop("severity", "critical"))
        severity = _SEVERITY_ALIASES.get(str(raw_severity).lower())
        if severity is None:
            raise SuiteSpecError(f"{where}: unknown severity {raw_severity!r}")
        exp["severity"] = severity
        if meta:
            exp["meta"] = meta
        else:
            exp.pop("meta", None)
        for param in _parameters_in(exp["kwargs"]):
            if not param.isidentifier():
                raise SuiteSpecError(f"{where}: $PARAMETER must be a plain name, got {param!r}")
        normalised.append(exp)
    return {**spec, "suite_parameters": dict(defaults), "expectations": normalised}


def required_parameters(spec: dict[str, Any]) -> set[str]:
    """Parameter names the caller must pass (those used by the suite without a default)."""
    used = {p for exp in spec["expectations"] for p in _parameters_in(exp["kwargs"])}
    return used - set(spec.get("suite_parameters") or {})


def validate_frame(
    df: pd.DataFrame,
    suite_name: str,
    expectations_dir: Path,
    parameters: dict[str, Any] | None = None,
) -> SuiteResult:
    """Validate ``df`` against suite ``suite_name`` and map GX's result to a :class:`SuiteResult`.

    ``parameters`` supplies the suite's ``$PARAMETER`` values (partition suites need
    ``partition_start`` and ``partition_end``: the half-open window ``[start, end)``);
    they override the suite's ``suite_parameters`` defaults. Dates and tz-aware datetimes
    (Dagster's ``partition_time_window``) are converted to naive UTC timestamps, the form
    the warehouse stores.

    Raises:
        SuiteSpecError: the suite is malformed or a required parameter is missing.
    """
    spec = load_suite_spec(suite_name, expectations_dir)
    missing = required_parameters(spec) - set(parameters or {})
    if missing:
        raise SuiteSpecError(
            f"suite {suite_name!r} needs parameter(s) {sorted(missing)}, "
            f"got {sorted(parameters or {})}"
        )
    values = {
        key: _to_parameter_value(value)
        for key, value in {**spec["suite_parameters"], **(parameters or {})}.items()
    }

    batch = _runtime().get_batch(batch_parameters={"dataframe": _prepare_frame(df)})
    # A pass/fail pass first: GX's SUMMARY format costs twice the time (it gathers counts
    # and unexpected values for every expectation), and on most days everything passes. The
    # expectations that failed are then validated again for their evidence.
    quick = batch.validate(
        _build_suite(spec), result_format="BOOLEAN_ONLY", expectation_parameters=values
    )
    failing = {_signature_of(r.expectation_config) for r in quick.results if not r.success}
    failed: list[FailedExpectation] = []
    if failing:
        again = [exp for exp in spec["expectations"] if _signature(exp) in failing]
        detailed = batch.validate(
            _build_suite({**spec, "expectations": again}),
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": _PARTIAL_UNEXPECTED_COUNT,
            },
            expectation_parameters=values,
        )
        failed = [_to_failed(r) for r in detailed.results if not r.success]
    # Suite file order reads better than GX's (it groups by column).
    order = {_signature(exp): i for i, exp in enumerate(spec["expectations"])}
    failed.sort(key=lambda f: order.get((f.expectation, f.description, f.column), len(order)))
    has_error = any(f.severity == "error" for f in failed)
    return SuiteResult(
        suite=suite_name,
        success=not has_error,
        evaluated=len(quick.results),
        failed=failed,
        has_error=has_error,
        has_warning=any(f.severity == "warn" for f in failed),
    )


# --------------------------------------------------------------------------- GX plumbing


@functools.cache
def _runtime() -> Any:
    """Import GX and build the ephemeral context once per process; return the batch definition.

    One pandas data source, one dataframe asset and one whole-dataframe batch definition serve
    every suite: the frame arrives as a batch parameter at validation time.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm bars ("Calculating Metrics") would flood Dagster's captured stderr.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("strata").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def _build_suite(spec: dict[str, Any]) -> Any:
    """Build a GX ExpectationSuite, failing loudly on an invalid expectation.

    ``ExpectationSuite(expectations=[dicts])`` logs and *drops* invalid entries, so each one
    is turned into a domain object here first, which raises.
    """
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for exp in spec["expectations"]:
        try:
            config = ExpectationConfiguration(
                type=exp["type"],
                kwargs=dict(exp["kwargs"]),
                meta=exp.get("meta"),
                notes=exp.get("notes"),
                description=exp.get("description"),
                severity=exp["severity"],
            )
            expectations.append(config.to_domain_obj())
        except Exception as exc:
            raise SuiteSpecError(f"suite {spec['name']!r}: invalid {exp['type']}: {exc}") from exc
    return ExpectationSuite(name=spec["name"], expectations=expectations, meta=spec.get("meta"))


def _prepare_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Give GX column dtypes it compares correctly and fast (GX 1.24 with pandas 3 / DuckDB 2).

    - GX's pandas ``expect_column_values_to_be_between`` is vectorised only for ``int64``,
      ``float64`` and ``datetime64[ns]``; anything else goes through a Python ``map`` per row.
      DuckDB 2 / pandas 3 return ``datetime64[us]``, ``int32`` and nullable ``Int32``, which made
      a 300k-row day ~8x slower. So: datetime64[non-ns] -> [ns] (left alone when out of the ns
      range), numpy ints -> int64, nullable ints -> int64 (float64 when they hold nulls).
    - Object columns of ``datetime.date`` (hand-made or Arrow frames) become datetime64[ns]:
      pandas refuses to compare them with the Timestamp bounds of a partition window.
    - A zero-row frame becomes all-object: there is nothing to compare, but pandas 3 types
      ``DataFrame({"c": []})`` as float64 and a float column fails a Timestamp comparison.
    """
    import numpy as np
    import pandas as pd

    if len(df) == 0:
        return df.astype(object)
    converted: dict[str, pd.Series] = {}
    for name in df.columns:
        column = df[name]
        dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind == "M" and dtype != np.dtype("<M8[ns]"):
            # Out of the ns range (dirty years): keep the slow but correct path.
            with contextlib.suppress(OverflowError, ValueError):
                converted[name] = column.astype("datetime64[ns]")
        elif isinstance(dtype, np.dtype) and dtype.kind in "iu" and dtype != np.dtype("int64"):
            converted[name] = column.astype("int64")
        elif isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_integer_dtype(
            dtype
        ):
            converted[name] = column.astype("float64" if column.hasnans else "int64")
        elif pd.api.types.is_object_dtype(dtype):
            first = column.first_valid_index()
            if first is not None and isinstance(column[first], dt.date):
                converted[name] = pd.to_datetime(column).astype("datetime64[ns]")
    return df.assign(**converted) if converted else df


def _to_parameter_value(value: Any) -> Any:
    """Dates/datetimes -> naive UTC ``pandas.Timestamp``, the type of our timestamp columns."""
    import pandas as pd

    if isinstance(value, dt.datetime | dt.date):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return stamp
    return value


def _to_failed(result: Any) -> FailedExpectation:
    """Map one failed GX ExpectationValidationResult to a FailedExpectation."""
    config = result.expectation_config
    kwargs = config.kwargs
    body = result.result or {}
    severity = getattr(config.severity, "value", config.severity) or "critical"
    exception = _exception_message(result.exception_info)

    if exception is not None:
        observed = f"error: {exception}"
        sample: list = []
    elif "unexpected_count" in body:
        count, total = body["unexpected_count"], body.get("element_count")
        pct = body.get("unexpected_percent")
        observed = f"{count} of {total} rows unexpected"
        if pct is not None:
            observed += f" ({pct:.2f}%)"
        sample = _distinct_sample(body.get("partial_unexpected_list") or [])
    else:
        mismatched = (body.get("details") or {}).get("mismatched") or {}
        missing = _json_value(mismatched.get("missing") or [])
        extra = _json_value(mismatched.get("unexpected") or [])
        if not kwargs.get("exact_match", True):
            extra = []  # extra columns are allowed, so do not list them as a problem
        if missing or extra:  # column-set expectations: name the columns, not the whole table
            parts = [f"missing columns {missing}"] if missing else []
            parts += [f"unexpected columns {extra}"] if extra else []
            observed = "; ".join(parts)
        else:
            observed = f"observed {_json_value(body.get('observed_value'))}"
        sample = _distinct_sample(missing)

    return FailedExpectation(
        expectation=config.type,
        column=_column_of(kwargs),
        severity=_SEVERITY_OUT.get(str(severity), "error"),
        observed=observed,
        unexpected_sample=sample,
        description=config.description,
    )


def _exception_message(info: Any) -> str | None:
    """GX reports exceptions either flat or keyed by metric id; return the first message."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _parameters_in(kwargs: dict[str, Any]) -> list[str]:
    """Names referenced as ``{"$PARAMETER": name}`` in an expectation's kwargs."""
    return [
        str(value[_PARAMETER_KEY])
        for value in kwargs.values()
        if isinstance(value, dict) and _PARAMETER_KEY in value
    ]


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if isinstance(kwargs.get("column"), str):
        return kwargs["column"]
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if isinstance(kwargs.get("column_list"), list):
        return ",".join(map(str, kwargs["column_list"]))
    return None


def _signature(exp: dict[str, Any]) -> tuple[str, str | None, str | None]:
    return exp["type"], exp.get("description"), _column_of(exp["kwargs"])


def _signature_of(config: Any) -> tuple[str, str | None, str | None]:
    """:func:`_signature` of a GX ExpectationConfiguration (as a result carries it)."""
    return config.type, config.description, _column_of(config.kwargs)


def _distinct_sample(values: list) -> list:
    """First SAMPLE_SIZE distinct values, JSON-serialisable (NaN/NaT/NA -> None)."""
    sample: list = []
    seen: set[str] = set()
    for value in values:
        converted = _json_value(value)
        key = json.dumps(converted, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            sample.append(converted)
            if len(sample) == SAMPLE_SIZE:
                break
    return sample


def _json_value(value: Any) -> Any:
    """Convert pandas/numpy scalars and containers to plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, decimal.Decimal):
        return None if value.is_nan() else str(value)
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    import numpy as np

    if isinstance(value, np.datetime64):  # .item() of a ns timestamp is a bare integer
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return _json_value(value.item())
    return str(value)
