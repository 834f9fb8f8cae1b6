"""Statements compiled once and run on a DBAPI cursor: for the few that every click runs.

Through SQLAlchemy's Core, each execution builds a connection wrapper, an execution context and a result,
and runs bind and result processing through several layers: about 150 µs a statement here, several times
what SQLite takes to run it. On a click's path (read the handoff, compare-and-set it, add its event and
outbox rows) that was most of its database time. A `Prepared` statement keeps SQLAlchemy's compilation for
the dialect and the column types' own bind and result processors, so that values go in and come out exactly
as a Core execution gives them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any]
Bound = Sequence[Any] | dict[str, Any]  # a statement's parameters as the driver takes them (`Prepared.parameters`)

# The one row of a positional INSERT's VALUES, e.g. " VALUES (?, ?, ?)"
_QMARK_ROW = re.compile(r" VALUES (\((?:\?, )*\?\))")
ROWS_PER_INSERT = 100  # × at most a dozen columns: far below SQLite's 32,766 parameters a statement


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
        row = _QMARK_ROW.search(self.sql) if self._positional else None
        # For many rows at once: the SQL before and after the row, and the row (see `run_many`)
        self._around_row = (self.sql[:row.start(1)], row.group(1), self.sql[row.end(1):]) if row else None

    def parameters(self, values: Mapping[str, Any]) -> Bound:
        """`values` as the driver takes them, each through its column type's bind processor."""
        if self._positional:
            return tuple(process(values[name]) if process else values[name] for name, process in self._binds)
        return {name: process(values[name]) if process else values[name] for name, process in self._binds}

    def execute(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> DBAPICursor:
        return self.run(cursor, self.parameters(values))

    def run(self, cursor: DBAPICursor, bound: Bound) -> DBAPICursor:
        """`execute` with parameters bound already: a writer binds before it takes the write turn."""
        cursor.execute(self.sql, bound)
        return cursor

    def execute_many(self, cursor: DBAPICursor, rows: Sequence[Mapping[str, Any]]) -> None:
        self.run_many(cursor, [self.parameters(row) for row in rows])

    def run_many(self, cursor: DBAPICursor, bound_rows: Sequence[Bound]) -> None:
        """Run the statement for each of `bound_rows` (`parameters` of each row), in order.

        A positional INSERT (SQLite's) takes its rows as one multi-row VALUES, a hundred at a time. SQLite's
        executemany steps the statement once per row, and lets go of the GIL at every step: a batch holding
        the write turn then waited for the GIL again after each row, behind whatever thread took it.
        """
        if self._around_row is None or len(bound_rows) == 1:
            cursor.executemany(self.sql, cast(Sequence[Any], bound_rows))
            return
        before, one_row, after = self._around_row
        for start in range(0, len(bound_rows), ROWS_PER_INSERT):
            chunk = cast(Sequence[Sequence[Any]], bound_rows[start:start + ROWS_PER_INSERT])
            cursor.execute(before + ", ".join([one_row] * len(chunk)) + after, tuple(chain.from_iterable(chunk)))

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
