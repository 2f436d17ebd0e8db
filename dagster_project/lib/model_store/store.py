"""A file-based, versioned model store under STRATA_HOME/models (never committed).

A version is named after the model, the as-of date of its training data and a hash of
the spec that configured it, so refitting the same data with the same spec reproduces
the same version id. Scoring a snapshot uses the newest version trained on data up to
that snapshot: a backfill of an old day never uses a model that saw the future.

A version is either promoted (scoring may use it) or a candidate that a promotion gate refused
(kept with its card and metrics as evidence, never used for scoring). Versions saved without a
gate are promoted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any


def spec_hash(spec_path: Path) -> str:
    return hashlib.sha256(spec_path.read_bytes()).hexdigest()[:10]


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    as_of: date
    spec_hash: str
    fitted_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    promoted: bool = True

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["as_of"] = self.as_of.isoformat()
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ModelVersion:
        return cls(**{**payload, "as_of": date.fromisoformat(payload["as_of"])})


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str, version: str) -> Path:
        return self.root / name / version

    def save(
        self,
        name: str,
        as_of: date,
        spec_digest: str,
        model: Any,
        metrics: dict[str, Any],
        promoted: bool = True,
    ) -> ModelVersion:
        version = ModelVersion(
            name=name,
            version=f"{name}-{as_of:%Y%m%d}-{spec_digest}",
            as_of=as_of,
            spec_hash=spec_digest,
            fitted_at=datetime.now().isoformat(timespec="seconds"),
            metrics=metrics,
            promoted=promoted,
        )
        directory = self._dir(name, version.version)
        # The artifact first, the card last: a version without a card is ignored, so a
        # crash mid-save never leaves a half-written model that scoring could pick up.
        _atomic_write(directory / "model.pkl", pickle.dumps(model))
        self._write_card(version)
        return version

    def _write_card(self, version: ModelVersion) -> None:
        _atomic_write(
            self._dir(version.name, version.version) / "card.json",
            json.dumps(version.to_json(), indent=2, sort_keys=True, default=str).encode(),
        )

    def set_promoted(self, version: ModelVersion, promoted: bool) -> ModelVersion:
        """Promote a candidate (or withdraw a version): rewrites its card atomically."""
        updated = replace(version, promoted=promoted)
        self._write_card(updated)
        return updated

    def versions(self, name: str) -> list[ModelVersion]:
        cards = sorted((self.root / name).glob("*/card.json"))
        found = [ModelVersion.from_json(json.loads(card.read_text())) for card in cards]
        return sorted(found, key=lambda v: (v.as_of, v.fitted_at))

    def latest_as_of(
        self, name: str, day: date, spec_digest: str | None, promoted_only: bool = False
    ) -> ModelVersion | None:
        """The newest version of this spec (any spec when None) trained on data up to `day`.

        With `promoted_only`, candidates refused by a promotion gate are skipped.
        """
        eligible = [
            v
            for v in self.versions(name)
            if v.as_of <= day
            and (spec_digest is None or v.spec_hash == spec_digest)
            and (v.promoted or not promoted_only)
        ]
        return eligible[-1] if eligible else None

    def load(self, version: ModelVersion) -> Any:
        with (self._dir(version.name, version.version) / "model.pkl").open("rb") as handle:
            # Only our own artifacts, written by save(), are ever unpickled here.
            return pickle.load(handle)

    def resolve(
        self,
        name: str,
        day: date,
        spec_digest: str,
        refit: bool,
        fit: Callable[[], tuple[Any, dict[str, Any]]],
        gate: Callable[[Any, dict[str, Any]], bool] | None = None,
    ) -> tuple[ModelVersion, bool]:
        """The newest version trained up to `day`; fits one when none exists or a refit is asked.

        Returns the version and whether it was fitted now. A version that exists counts even
        when it is a refused candidate (the data would give the same model and the same
        refusal; the next scheduled refit tries again). `gate(model, metrics)` decides whether a
        new version is promoted; without a gate every version is.
        """
        current = None if refit else self.latest_as_of(name, day, spec_digest)
        if current is not None:
            return current, False
        model, metrics = fit()
        promoted = True if gate is None else bool(gate(model, metrics))
        return self.save(name, day, spec_digest, model, metrics, promoted=promoted), True
