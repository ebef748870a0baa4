"""Row <-> record mapping, generated from each record's one list of fields.

A :class:`RowMap` pairs a frozen record dataclass with its table. The columns it reads and writes
are the record's fields that the table has; how each value is stored follows from the field's
type (an enum by its value, pydantic models and tuples as JSON lists, mappings as JSON objects),
so a record's fields are written down once, in :mod:`aggregator.records`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, ClassVar, cast

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Table

type Encoder = Callable[[Any], Any]
type Decoder = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _optional(encode: Encoder) -> Encoder:
    return lambda value: None if value is None else encode(value)


def _codec(annotation: Any) -> tuple[Encoder, Decoder]:
    """Return how a field of this type is written to its column and read back."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot map a field of type {annotation}")
        encode, decode = _codec(inner[0])
        return _optional(encode), _optional(decode)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        enum = annotation
        return (lambda value: value.value), enum
    if annotation is bool:
        return _same, bool
    return _container_codec(annotation)


def _container_codec(annotation: Any) -> tuple[Encoder, Decoder]:
    """Return the codec of a tuple (a JSON list) or dict (a JSON object) field, else as is."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item, *_) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            # One call into pydantic-core for the whole list, not one per model.
            adapter: TypeAdapter[tuple[Any, ...]] = TypeAdapter(tuple[item, ...])  # type: ignore[valid-type]
            return (
                lambda value: adapter.dump_python(value, mode="json"),
                lambda value: adapter.validate_python(value or ()),
            )
        return list, lambda value: tuple(value or ())
    if origin is dict:
        return dict, lambda value: dict(value or {})
    return _same, _same


class RowMap[RecordT]:
    """How one record type is stored in one table (and which columns are its key)."""

    _instances: ClassVar[dict[type[Any], RowMap[Any]]] = {}

    def __init__(self, record: type[RecordT], table: Table, key: Sequence[str]) -> None:
        """Derive the column list and the codecs from the record's dataclass fields."""
        hints = typing.get_type_hints(record)
        names = [item.name for item in dataclasses.fields(cast(Any, record))]
        self.record_type = record
        self.table = table
        self.columns = tuple(name for name in names if name in table.c)
        missing = [name for name in key if name not in self.columns]
        if missing:
            raise ValueError(f"{record.__name__}: key columns {missing} are not fields")
        self.key = tuple(key)
        self.values_columns = tuple(name for name in self.columns if name not in self.key)
        codecs = {name: _codec(hints[name]) for name in self.columns}
        self._encoders = tuple((name, codecs[name][0]) for name in self.columns)
        self._decoders = tuple((name, codecs[name][1]) for name in self.columns)
        RowMap._instances[record] = self

    @classmethod
    def of(cls, record: type[RecordT]) -> RowMap[RecordT]:
        """Return the mapping registered for a record type."""
        return cast(RowMap[RecordT], cls._instances[record])

    def to_row(self, record: RecordT) -> dict[str, Any]:
        """Return the column values of a record."""
        return {name: encode(getattr(record, name)) for name, encode in self._encoders}

    def from_row(self, row: Any, **extra: Any) -> RecordT:
        """Build a record from a result row (``extra`` sets fields that are not columns)."""
        mapping = row._mapping
        values = {name: decode(mapping[name]) for name, decode in self._decoders}
        return self.record_type(**values, **extra)

    def key_of(self, record: RecordT) -> tuple[Any, ...]:
        """Return the record's primary-key values."""
        return tuple(getattr(record, name) for name in self.key)
