"""Prebuilt Core statements run straight on the session's DBAPI connection.

A charge request runs about a dozen small statements, and on SQLite SQLAlchemy's per-execution machinery
(execution context, parameter construction, cursor result metadata) costs more than SQLite's own work. A
statement that is built once can also be compiled once per dialect: `run` keeps the compiled SQL, the
order of its parameters, the bind processors of their types and, after the first execution, the result
processors of its columns, and then only converts values and calls `cursor.execute`.

It is the same SQL SQLAlchemy would send, with the same conversions: parameters and results go through the
types' public `bind_processor`/`result_processor` for the dialect (so `UtcDateTime`, JSON documents, dates
and booleans read and write exactly as through the ORM). The statement runs on `session.connection()`, so
the transaction is the session's (BEGIN IMMEDIATE and the SQLite writer gate included), and the session's
pending changes are flushed first, as its autoflush would. Driver errors are raised as SQLAlchemy's own
exception classes (IntegrityError and so on), and listeners of `before_cursor_execute` are called.

Only statements whose parameters are all plain bound values qualify (no expanding IN lists, no
post-compile parameters, no SQL-expression defaults); `run` refuses the others when it first compiles them.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

__all__ = ["FastResult", "read_alone", "run"]

_Processor = Callable[[Any], Any] | None


class FastResult:
    """The rows of one execution, fetched at once (the hot path's results are a few rows): the subset of
    SQLAlchemy's Result that the callers use. Rows are named tuples: indexable and with column attributes."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise exc.NoResultFound("no row") if not self.rows else exc.MultipleResultsFound("several rows")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]


class _Compiled:
    """One statement compiled for one dialect (and, for INSERT/UPDATE, one set of value keys)."""

    __slots__ = (
        "defaults",
        "dialect",
        "named",
        "order",
        "processors",
        "reader",
        "returns_rows",
        "sql",
        "statement",
    )

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        sql = compiled.string
        if "POSTCOMPILE" in sql or getattr(compiled, "escaped_bind_names", None):
            raise ValueError(f"not a plain prebuilt statement (post-compile or escaped parameters): {sql}")
        self.statement = statement
        self.dialect = dialect
        self.sql = sql
        # Known from the statement: psycopg builds a Column object per result column every time its
        # cursor's `description` is read, so a row-less execution is not told apart by asking for it.
        self.returns_rows = bool(statement.is_select or getattr(compiled, "effective_returning", None))  # type: ignore[attr-defined]
        self.named = not compiled.positional
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        self.order: tuple[str, ...] = tuple(names)
        self.processors: dict[str, _Processor] = {}
        self.defaults: dict[str, Callable[[], Any]] = {}
        supplied = set(keys or ())
        for name in names:
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"expanding parameter {name!r} is not supported: {sql}")
            self.processors[name] = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name not in supplied and not bind.required:
                self.defaults[name] = _constant(bind.effective_value)
        # Python-side column defaults (INSERT) and onupdate values (UPDATE) the execution context would
        # have computed: a constant or a callable taking no context.
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            generator = column.default if statement.is_insert else column.onupdate  # type: ignore[attr-defined]
            if generator is None or not (generator.is_scalar or generator.is_callable):
                raise ValueError(f"column {column.key!r} has a default run can't compute: {sql}")
            name = column.key
            if generator.is_scalar:
                self.defaults[name] = _constant(generator.arg)
            else:
                self.defaults[name] = _called(generator.arg)
        self.reader: Callable[[tuple[Any, ...]], Any] | None = None

    def parameters(self, params: Mapping[str, Any]) -> Any:
        processors, defaults = self.processors, self.defaults
        values = []
        for name in self.order:
            if name in params:
                value = params[name]
            else:
                value = defaults[name]() if name in defaults else _missing(name)
            # None goes through the processor too: a JSON column stores it as JSON null, as SQLAlchemy does.
            processor = processors[name]
            values.append(value if processor is None else processor(value))
        return dict(zip(self.order, values, strict=True)) if self.named else values

    def read(self, cursor: Any) -> Callable[[tuple[Any, ...]], Any]:
        # The result processors depend on the driver's type codes (PostgreSQL's OIDs): taken from the first
        # execution's description, which a prebuilt statement keeps.
        if self.reader is None:
            description = cursor.description
            columns = list(self.statement.exported_columns)  # type: ignore[attr-defined]
            processors: list[_Processor] = []
            for index, entry in enumerate(description):
                type_ = columns[index].type if index < len(columns) else None
                processors.append(
                    type_.dialect_impl(self.dialect).result_processor(self.dialect, entry[1])
                    if type_ is not None
                    else None
                )
            # Named as SQLAlchemy's rows are (the statement's column keys, not the labels it rendered).
            keys = list(self.statement.exported_columns.keys())  # type: ignore[attr-defined]
            if len(keys) != len(description):
                keys = [entry[0] for entry in description]
            row = namedtuple("Row", keys, rename=True)  # type: ignore[misc]
            self.reader = _row_reader(row._make, processors)
        return self.reader


def _row_reader(make: Callable[[Any], Any], processors: list[_Processor]) -> Callable[[tuple[Any, ...]], Any]:
    # Only the columns that have a processor are touched (on SQLite most values come back as they are).
    converted = [(index, processor) for index, processor in enumerate(processors) if processor is not None]
    if not converted:
        return make

    def convert(raw: tuple[Any, ...]) -> Any:
        values = list(raw)
        for index, processor in converted:
            values[index] = processor(values[index])
        return make(values)

    return convert


_COMPILED: dict[tuple[Any, ...], _Compiled] = {}
_CONNECTION = "fast_sql.connection"
"""session.info key: (the session's transaction, its connection)."""


def run(session: Session, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> FastResult:
    """Execute a statement built once (a module constant) in the session's transaction."""
    session.flush()
    # The transaction's connection, asked of the session once per transaction: `session.connection()`
    # walks the session's state machine every time, and a charge runs a dozen statements.
    transaction = session.get_transaction()
    known = session.info.get(_CONNECTION)
    if transaction is not None and known is not None and known[0] is transaction:
        connection = known[1]
    else:
        connection = session.connection()
        session.info[_CONNECTION] = (session.get_transaction(), connection)
    return _execute(connection, statement, params or {})


def read_alone(
    engine: Engine, statement: ClauseElement, params: Mapping[str, Any] | None = None
) -> FastResult:
    """Run one SELECT on its own, outside any transaction we open: on SQLite (our connections are in
    autocommit; see db.py) a single statement is its own read transaction, so it sees one consistent
    snapshot. The request's Session is not involved: a whole Session transaction (BEGIN, COMMIT and the
    session's and pool's bookkeeping) costs ten times what a one-row lookup does, and authentication runs
    one on every request. PostgreSQL's pooled connections are not in autocommit (a pool checkin would roll
    the implicit transaction back, which also drops psycopg's prepared statements): SQLite only."""
    if engine.dialect.name != "sqlite":
        raise ValueError("read_alone is for SQLite's autocommit connections")
    if not statement.is_select:  # type: ignore[attr-defined]
        raise ValueError("read_alone runs only a SELECT")
    with engine.connect() as connection:
        # The statement goes to the DBAPI cursor directly, so the Connection never autobegins.
        return _execute(connection, statement, params or {})


def _execute(connection: Connection, statement: ClauseElement, params: Mapping[str, Any]) -> FastResult:
    dialect = connection.dialect
    is_dml = statement.is_dml  # type: ignore[attr-defined]
    cache_key = (statement, dialect.name, tuple(params)) if is_dml else (statement, dialect.name)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        compiled = _COMPILED[cache_key] = _Compiled(statement, dialect, tuple(params) if is_dml else None)
    parameters = compiled.parameters(params)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # Listeners on the engine's cursor events (SQL tracing, the charge bench's statement count) see
        # these statements too.
        listeners = connection.dispatch.before_cursor_execute
        if listeners:
            for listener in listeners:
                listener(connection, cursor, compiled.sql, parameters, None, False)
        cursor.execute(compiled.sql, parameters)
        if not compiled.returns_rows:
            return FastResult([], cursor.rowcount)
        convert = compiled.read(cursor)
        return FastResult([convert(raw) for raw in cursor.fetchall()], cursor.rowcount)
    except dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(
            compiled.sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    finally:
        cursor.close()


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _called(function: Any) -> Callable[[], Any]:
    # SQLAlchemy wraps a no-argument default so that it accepts the execution context.
    return lambda: function(None)


def _missing(name: str) -> Any:
    raise exc.ArgumentError(f"a value is required for bind parameter {name!r}")
