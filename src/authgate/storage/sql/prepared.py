"""The hot statements, run on the DBAPI connection and compiled once from their Core form.

Why this exists: the store methods of the token endpoint run one or a few one-row statements
each, and most of their CPU time went into SQLAlchemy's execution machinery, not into the
database: ``get_app`` by id cost ~110 µs through ``Connection.execute`` against ~6 µs for the
same SELECT on the sqlite3 connection (the ``Connection`` and transaction objects, the compiled
cache lookup, the execution context, result metadata, ``Row`` objects). Those methods run in
``SqlBase._raw_transaction()``, which hands them a ``Runner`` on a pooled DBAPI connection.

Nothing else changes. The SQL is the module's existing Core statement, compiled once per
dialect, and every value goes through the bind and result processors SQLAlchemy itself applies
(``UTCDateTime`` refusing naive datetimes, SQLite's datetime text, JSON), so a row written here
is byte-identical to one written through ``Connection.execute`` and reads back the same by
either path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ReturnsRows

Row = dict[str, Any]


class Prepared:
    """One Core statement compiled for one dialect: its SQL, parameter order and processors.

    Every parameter must be a ``bindparam()`` the caller supplies: literal values SQLAlchemy
    renders at execution time (``literal_execute``, expanding ``IN``) cannot be compiled once.
    """

    __slots__ = ("_binds", "_keys", "_names", "_positional", "_results", "sql")

    def __init__(self, statement: ReturnsRows, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError(f"statement renders values at execution time: {compiled}")
        if compiled.escaped_bind_names:
            raise ValueError(f"statement has bind names the driver cannot take: {compiled}")
        fixed = [name for name, bind in compiled.binds.items() if not bind.required]
        if fixed:
            raise ValueError(f"statement has values not given as bindparam(): {fixed}")
        self.sql = str(compiled)
        self._positional = dialect.positional
        self._names: tuple[str, ...] = tuple(
            (compiled.positiontup or ()) if dialect.positional else compiled.binds
        )
        # The processors of the dialect's implementation of each type, as SQLAlchemy applies
        # them (``TypeEngine.bind_processor`` of the generic type would skip, e.g., SQLite's
        # datetime-to-text conversion).
        self._binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._names
        )
        columns = list(statement.exported_columns)
        # The keys of the row: the column keys, or their labels where the statement has them.
        self._keys = tuple(statement.exported_columns.keys())
        results = (
            (index, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for index, column in enumerate(columns)
        )
        self._results = tuple((index, convert) for index, convert in results if convert)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters: processed values in the paramstyle of the dialect."""
        bound = tuple(
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(self._names, self._binds, strict=True)
        )
        return bound if self._positional else dict(zip(self._names, bound, strict=True))

    def batch(
        self,
        rows: Iterable[Any],
        *,
        attributes: bool = False,
        converted: dict[datetime, Any] | None = None,
    ) -> list[Any]:
        """``parameters()`` of every row of a batch: mappings, or with ``attributes`` objects
        whose attributes are named like the parameters (a dataclass of the table's row).

        The values are read in C (``itemgetter``/``attrgetter``) and only the parameters that
        have a processor are processed; a datetime once per batch however many rows carry it
        (the steps of one request share their time, and a flow's summary repeats its steps'
        times; ``converted`` carries them over to the next batch of the same transaction,
        whose rows repeat them). The per-row Python is most of what a batch of appended rows
        costs."""
        done: dict[datetime, Any] = {} if converted is None else converted

        def cached(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def process(value: Any) -> Any:
                if type(value) is not datetime:
                    return convert(value)
                processed = done.get(value)
                if processed is None:
                    processed = done[value] = convert(value)
                return processed

            return process

        names = self._names
        read = (attrgetter if attributes else itemgetter)(*names)
        converts = [(i, cached(convert)) for i, convert in enumerate(self._binds) if convert]
        single = len(names) == 1
        batch = []
        for values in rows:
            bound = [read(values)] if single else list(read(values))
            for index, convert in converts:
                bound[index] = convert(bound[index])
            batch.append(tuple(bound) if self._positional else dict(zip(names, bound, strict=True)))
        return batch

    def row(self, values: Sequence[Any]) -> Row:
        """A fetched row as column key → processed value (as ``Row._mapping`` would be)."""
        processed = list(values)
        for index, convert in self._results:
            processed[index] = convert(processed[index])
        return dict(zip(self._keys, processed, strict=True))


class Statements:
    """The ``Prepared`` form of each statement for one engine's dialect, built on first use
    (after the first connection, when the dialect knows its server) and kept: they are
    immutable. Keyed by the statement object, so only module-level statements belong here."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._prepared: dict[ReturnsRows, Prepared] = {}

    def __call__(self, statement: ReturnsRows) -> Prepared:
        prepared = self._prepared.get(statement)
        if prepared is None:
            # Two threads may both build it; either result is the same.
            prepared = self._prepared[statement] = Prepared(statement, self._dialect)
        return prepared


class Result(Protocol):
    """What both a DBAPI cursor and SQLAlchemy's ``CursorResult`` offer."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


#: Runs driver SQL with driver parameters: a DBAPI cursor's ``execute`` (returning the cursor),
#: or ``Connection.exec_driver_sql`` where SQLAlchemy's cursor events must see the statements.
Execute = Callable[[str, Any], Result]
#: Runs driver SQL once per parameter set of a list: a cursor's ``executemany``, or
#: ``Connection.exec_driver_sql`` with the list.
ExecuteMany = Callable[[str, list[Any]], object]


class Runner:
    """Runs prepared statements inside one transaction of ``SqlBase._raw_transaction()``.

    The methods mirror ``Connection.execute(statement, params)`` followed by ``.rowcount``,
    ``.first()`` and ``.all()``; rows come back as dicts keyed like ``Row._mapping``.
    """

    __slots__ = ("_execute", "_execute_many", "_statements")

    def __init__(self, execute: Execute, statements: Statements, execute_many: ExecuteMany) -> None:
        self._execute = execute
        self._execute_many = execute_many
        self._statements = statements

    def execute(self, statement: ReturnsRows, params: Mapping[str, Any]) -> int:
        """Run a statement; the number of rows it changed."""
        prepared = self._statements(statement)
        return self._execute(prepared.sql, prepared.parameters(params)).rowcount

    def execute_each(
        self,
        statement: ReturnsRows,
        rows: Iterable[Any],
        *,
        attributes: bool = False,
        converted: dict[datetime, Any] | None = None,
    ) -> None:
        """Run a statement once per row (mappings, or objects with ``attributes``, as
        ``Prepared.batch`` takes them, ``converted`` too): one ``executemany`` of the driver
        for the batch."""
        prepared = self._statements(statement)
        batch = prepared.batch(rows, attributes=attributes, converted=converted)
        if batch:
            self._execute_many(prepared.sql, batch)

    def first(self, statement: ReturnsRows, params: Mapping[str, Any]) -> Row | None:
        prepared = self._statements(statement)
        row = self._execute(prepared.sql, prepared.parameters(params)).fetchone()
        return None if row is None else prepared.row(row)

    def all(self, statement: ReturnsRows, params: Mapping[str, Any]) -> list[Row]:
        prepared = self._statements(statement)
        rows = self._execute(prepared.sql, prepared.parameters(params)).fetchall()
        return [prepared.row(row) for row in rows]
