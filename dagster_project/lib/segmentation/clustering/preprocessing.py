"""The clustering space as one scikit-learn Pipeline: fill NULLs -> reshape tails -> scale.

``FillNulls`` turns the polars user_features frame into a float matrix (the NULL handling of
non-customers belongs to the model, not to each caller), ``ShapeColumns`` applies a
sign-preserving log1p or a normal-scores quantile transform to heavy-tailed columns, and
``StandardScaler`` scales. Every step inverts, so centroids map back to original units.
Imported only when a model is fitted or loaded: scikit-learn costs seconds to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler

#: Fill keyword: the median of the column's non-NULL values in the training data (learned by fit,
#: stored in the model), e.g. a non-customer's average order value is the customers' median.
MEDIAN_FILL = "median"


class FillNulls(TransformerMixin, BaseEstimator):
    """user_features -> ``features`` in original units, NULLs filled: a fill column (e.g. a
    non-customer's recency is their tenure), a fill number, the learned median, else 0."""

    def __init__(
        self, features: Sequence[str] = (), fill: Mapping[str, str | float] | None = None
    ) -> None:
        self.features = features
        self.fill = fill

    def _fills(self) -> Mapping[str, str | float]:
        return self.fill or {}

    def fit(self, frame: pl.DataFrame, y: object = None) -> FillNulls:
        """Check the columns and learn the median fills."""
        missing = [f for f in self.features if f not in frame.columns]
        missing += [
            src
            for f, src in self._fills().items()
            if f in self.features
            and isinstance(src, str)
            and src != MEDIAN_FILL
            and src not in frame.columns
        ]
        if missing:
            raise ValueError(f"frame is missing columns {sorted(set(missing))}")
        self.fill_values_: dict[str, float] = {}
        for f, src in self._fills().items():
            if src == MEDIAN_FILL and f in self.features:
                median = frame.get_column(f).cast(pl.Float64).fill_nan(None).median()
                self.fill_values_[f] = float(median) if median is not None else 0.0
        self.n_features_in_ = len(self.features)
        return self

    def transform(self, frame: pl.DataFrame) -> np.ndarray:
        """The filled matrix, one column per feature in order."""
        exprs = []
        for f in self.features:
            expr = pl.col(f).cast(pl.Float64).fill_nan(None)
            src = self._fills().get(f)
            if src == MEDIAN_FILL:
                expr = expr.fill_null(self.fill_values_.get(f, 0.0))
            elif isinstance(src, str):
                expr = expr.fill_null(pl.col(src).cast(pl.Float64))
            elif src is not None:
                expr = expr.fill_null(float(src))
            exprs.append(expr.fill_null(0.0).alias(f))
        return frame.select(exprs).to_numpy().astype(np.float64, copy=False)

    def inverse_transform(self, matrix: np.ndarray) -> np.ndarray:
        """Identity: filled values are already in original units."""
        return matrix

    def readable(self, frame: pl.DataFrame) -> np.ndarray:
        """Features in original units for explanations: a fill column where the spec names one,
        otherwise NULL -> 0 ("no orders" reads as 0, not as the customers' median)."""
        exprs = []
        for f in self.features:
            expr = pl.col(f).cast(pl.Float64).fill_nan(None)
            src = self._fills().get(f)
            if isinstance(src, str) and src != MEDIAN_FILL and src in frame.columns:
                expr = expr.fill_null(pl.col(src).cast(pl.Float64))
            exprs.append(expr.fill_null(0.0).alias(f))
        return frame.select(exprs).to_numpy().astype(np.float64, copy=False)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    """log1p for non-negative values; mirrored for negatives (trend columns can be < 0)."""
    return np.sign(x) * np.log1p(np.abs(x))


def _signed_expm1(y: np.ndarray) -> np.ndarray:
    return np.sign(y) * np.expm1(np.abs(y))


class ShapeColumns(TransformerMixin, BaseEstimator):
    """Signed log1p on ``log_columns``, signed ``log1p(x / scale)`` on ``log_scales`` (column
    index -> scale: linear below the scale, logarithmic above it), normal scores on
    ``quantile_columns`` (column indexes, disjoint), the other columns unchanged."""

    def __init__(
        self,
        log_columns: Sequence[int] = (),
        quantile_columns: Sequence[int] = (),
        random_state: int | None = None,
        log_scales: Mapping[int, float] | None = None,
    ) -> None:
        self.log_columns = log_columns
        self.quantile_columns = quantile_columns
        self.random_state = random_state
        self.log_scales = log_scales

    def fit(self, matrix: np.ndarray, y: object = None) -> ShapeColumns:
        """Learn the quantiles of the quantile columns."""
        scaled = set(self.log_scales or {})
        if (
            set(self.log_columns) & set(self.quantile_columns)
            or scaled & set(self.log_columns)
            or scaled & set(self.quantile_columns)
        ):
            raise ValueError("a column is either log- or quantile-transformed, not both")
        cols = list(self.quantile_columns)
        self.quantile_ = (
            QuantileTransformer(
                n_quantiles=max(2, min(1000, matrix.shape[0])),
                output_distribution="normal",
                subsample=100_000,
                random_state=self.random_state,
            ).fit(matrix[:, cols])
            if cols
            else None
        )
        self.n_features_in_ = matrix.shape[1]
        return self

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        return self._apply(matrix, _signed_log1p, "transform")

    def inverse_transform(self, shaped: np.ndarray) -> np.ndarray:
        return self._apply(shaped, _signed_expm1, "inverse_transform")

    def _apply(
        self, matrix: np.ndarray, log_step: Callable[[np.ndarray], np.ndarray], quantile_method: str
    ) -> np.ndarray:
        """``log_step`` on the log columns and the quantile transformer's method on the others."""
        out = np.asarray(matrix, dtype=np.float64).copy()  # C order, as KMeans prefers
        for j in self.log_columns:
            out[:, j] = log_step(out[:, j])
        # versions pickled before scaled logs existed have no log_scales
        for j, scale in (getattr(self, "log_scales", None) or {}).items():
            if quantile_method == "transform":
                out[:, j] = log_step(out[:, j] / scale)
            else:
                out[:, j] = log_step(out[:, j]) * scale
        if self.quantile_ is not None:
            cols = list(self.quantile_columns)
            out[:, cols] = getattr(self.quantile_, quantile_method)(matrix[:, cols])
        return out


def clustering_space(
    features: Sequence[str],
    fill: Mapping[str, str | float],
    log_features: Sequence[str],
    quantile_features: Sequence[str],
    random_state: int | None,
    scaled_log_features: Mapping[str, float] | None = None,
) -> Pipeline:
    """The unfitted pipeline from user_features to the scaled space KMeans clusters in."""
    scales = dict(scaled_log_features or {})
    unknown = (set(log_features) | set(quantile_features) | set(scales)) - set(features)
    if unknown:
        raise ValueError(
            f"log_features / quantile_features / scaled_log_features not in features: "
            f"{sorted(unknown)}"
        )
    if set(quantile_features) & set(log_features):
        raise ValueError("quantile_features: a subset of features, disjoint from log_features")
    columns = list(features)
    return Pipeline(
        [
            ("fill", FillNulls(features=columns, fill=dict(fill))),
            (
                "shape",
                ShapeColumns(
                    log_columns=[j for j, f in enumerate(columns) if f in log_features],
                    quantile_columns=[j for j, f in enumerate(columns) if f in quantile_features],
                    random_state=random_state,
                    log_scales={j: float(scales[f]) for j, f in enumerate(columns) if f in scales},
                ),
            ),
            ("scale", StandardScaler()),
        ]
    )
