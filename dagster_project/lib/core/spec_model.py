"""One typed loader for the committed YAML specs (segmentation.yml, value.yml, source mappings).

Each spec declares its keys and types once; pydantic refuses unknown keys and wrong types, and
:class:`SpecError` names the key path ("tables.orders.delimeter: unknown key ..."), so a typo
fails loudly at load time instead of silently taking a default.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError, create_model

_CONFIG = ConfigDict(extra="forbid")
ModelT = TypeVar("ModelT", bound=BaseModel)
# ints and booleans must be written as such (yaml `1.5` or `yes` for a count is a mistake)
_STRICT = {int: StrictInt, bool: StrictBool}


class SpecError(ValueError):
    """A spec is wrong; the message starts with the key path it concerns."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class SpecModel(BaseModel):
    """Base of a spec layout declared as classes: the declared keys and no other."""

    model_config = _CONFIG


def spec_model(name: str, fields: Mapping[str, Any]) -> type[BaseModel]:
    """A model of one spec mapping: these keys (each optional) with these types, no other key."""
    declared = {key: (_STRICT.get(kind, kind) | None, None) for key, kind in fields.items()}
    return create_model(name, __config__=_CONFIG, **declared)


def dataclass_model(cls: type) -> type[BaseModel]:
    """The spec model of a frozen dataclass section: its fields and their annotated types."""
    hints = typing.get_type_hints(cls)
    return spec_model(cls.__name__, {f.name: hints[f.name] for f in dataclasses.fields(cls)})


def parse_model(
    model: type[ModelT], raw: Any, where: str = "", error: type[SpecError] = SpecError
) -> ModelT:
    """``raw`` validated against ``model``, as an instance of it.

    ``where`` is the key path of ``raw`` in its file; ``error`` the SpecError subclass to raise.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise error(where, "must be a mapping")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in (where, *first["loc"]) if part != "")
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(_model_at(model, first["loc"][:-1]).model_fields)
            raise error(key, f"unknown key (allowed: {allowed})") from None
        raise error(key, first["msg"]) from None


def parse_spec(
    model: type[BaseModel], raw: Any, where: str = "", error: type[SpecError] = SpecError
) -> dict[str, Any]:
    """The keys ``raw`` gives, validated against ``model`` (nested models become dicts)."""
    return parse_model(model, raw, where, error).model_dump(exclude_unset=True)


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel]:
    """The model validating the mapping at ``path`` (list indexes and dict keys pass through)."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is not None:
            model = _nested_model(field.annotation) or model
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None
