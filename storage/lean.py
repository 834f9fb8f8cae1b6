"""Statements compiled once and run on a DBAPI cursor: for the few that every click runs.

Through SQLAlchemy's Core, each execution builds a connection wrapper, an execution context and a result,
and runs bind and result processing through several layers: about 150 µs a statement here, several times
what SQLite takes to run it. On a click's path (read the handoff, compare-and-set it, add its event and
outbox rows) that was most of its database time. A `Prepared` statement keeps SQLAlchemy's compilation for
the dialect and the column types' own bind and result processors, so that values go in and come out exactly
as a Core execution gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any]


class Prepared:
    """`statement` compiled for `dialect`; `result_types` are the types of its result columns, in order.

    An INSERT is compiled for the `column_keys` its rows give. A row must give every parameter: a column
    default is not filled in (a KeyError says which is missing).
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect, *, column_keys: Sequence[str] | None = None,
                 result_types: Sequence[TypeEngine[Any]] = ()) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=column_keys))
        self.sql = compiled.string
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in compiled.binds.items()}
        # (name, processor) in the order the driver takes them: positional (SQLite's "?"), else by name
        self._positional = compiled.positional
        order = compiled.positiontup if compiled.positional and compiled.positiontup else list(processors)
        self._binds: list[tuple[str, Processor | None]] = [(name, processors[name]) for name in order]
        self._dialect = dialect
        self._result_types = list(result_types)
        # Built from the first result's description: a driver's type codes choose some processors (PostgreSQL's
        # numbers), as they do for SQLAlchemy.
        self._results: list[Processor | None] | None = None

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self._positional:
            return tuple(process(values[name]) if process else values[name] for name, process in self._binds)
        return {name: process(values[name]) if process else values[name] for name, process in self._binds}

    def execute(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> DBAPICursor:
        cursor.execute(self.sql, self.parameters(values))
        return cursor

    def execute_many(self, cursor: DBAPICursor, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor.executemany(self.sql, cast(Sequence[Any], [self.parameters(row) for row in rows]))

    def first(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of the result, each value as the column's type reads it; None for no row."""
        row = self.execute(cursor, values).fetchone()
        if row is None:
            return None
        if self._results is None:
            self._results = [
                type_.dialect_impl(self._dialect).result_processor(self._dialect, column[1])
                for type_, column in zip(self._result_types, cursor.description, strict=True)
            ]
        return tuple(process(value) if process else value for process, value in zip(self._results, row, strict=True))
