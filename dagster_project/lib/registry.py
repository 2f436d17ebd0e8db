"""A file-based, versioned model store under STRATA_HOME/models (never committed).

A version is named after the model, the as-of date of its training data and a hash of
the spec that configured it, so refitting the same data with the same spec reproduces
the same version id. Scoring a snapshot uses the newest version trained on data up to
that snapshot: a backfill of an old day never uses a model that saw the future.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
        self, name: str, as_of: date, spec_digest: str, model: Any, metrics: dict[str, Any]
    ) -> ModelVersion:
        version = ModelVersion(
            name=name,
            version=f"{name}-{as_of:%Y%m%d}-{spec_digest}",
            as_of=as_of,
            spec_hash=spec_digest,
            fitted_at=datetime.now().isoformat(timespec="seconds"),
            metrics=metrics,
        )
        directory = self._dir(name, version.version)
        # The artifact first, the card last: a version without a card is ignored, so a
        # crash mid-save never leaves a half-written model that scoring could pick up.
        _atomic_write(directory / "model.pkl", pickle.dumps(model))
        _atomic_write(
            directory / "card.json",
            json.dumps(version.to_json(), indent=2, sort_keys=True, default=str).encode(),
        )
        return version

    def versions(self, name: str) -> list[ModelVersion]:
        cards = sorted((self.root / name).glob("*/card.json"))
        found = [ModelVersion.from_json(json.loads(card.read_text())) for card in cards]
        return sorted(found, key=lambda v: (v.as_of, v.fitted_at))

    def latest_as_of(self, name: str, day: date, spec_digest: str) -> ModelVersion | None:
        """The newest version of this spec trained on data up to `day`."""
        eligible = [v for v in self.versions(name) if v.as_of <= day and v.spec_hash == spec_digest]
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
    ) -> tuple[ModelVersion, bool]:
        """The version to score `day` with; fits one when none exists or a refit is asked.

        Returns the version and whether it was fitted now.
        """
        current = None if refit else self.latest_as_of(name, day, spec_digest)
        if current is not None:
            return current, False
        model, metrics = fit()
        return self.save(name, day, spec_digest, model, metrics), True
