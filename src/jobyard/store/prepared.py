"""Hot statements compiled once per dialect and run on the driver's cursor.

SQLAlchemy Core redoes per call what never changes for a hot INSERT: it looks up the
compiled statement in its cache, builds an execution context and walks the parameters
through each column type. :class:`PreparedInsert` does the compiling once, keeps the
columns' bind processors (JSON, aware UTC timestamps, booleans — the same functions
SQLAlchemy would call) and hands the driver its SQL and parameters directly, inside the
connection's open transaction. Driver errors come out wrapped as SQLAlchemy's, so
callers see the same exceptions as from :meth:`sqlalchemy.Connection.execute`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Dialect


class PreparedInsert:
    """``INSERT INTO table (columns) VALUES (…) [RETURNING column]`` for one dialect."""

    def __init__(
        self, table: sa.Table, columns: Sequence[str], dialect: Dialect, returning: str | None
    ) -> None:
        stmt: Any = table.insert()
        if returning is not None:
            stmt = stmt.returning(table.c[returning])
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        self.sql: str = compiled.string
        self.columns = tuple(columns)
        #: the parameter names in placeholder order (positional paramstyles), else None
        self.order: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )
        self.processors: dict[str, Callable[[Any], Any]] = {}
        #: what a processor makes of None, and a JSON column's of ``{}``, worked out once
        #: (most of a plain job's columns are one or the other)
        self._none: dict[str, Any] = {}
        self._empty: dict[str, Any] = {}
        for name in columns:
            column_type = table.c[name].type
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors[name] = process
                with suppress(Exception):  # a type that refuses None keeps refusing it
                    self._none[name] = process(None)
                if isinstance(column_type, sa.JSON):
                    self._empty[name] = process({})

        self.values: Callable[[Mapping[str, Any]], dict[str, Any]]
        self.parameters: Callable[[Mapping[str, Any]], Sequence[Any] | dict[str, Any]]
        self.values, self.parameters = self._compile()
        self._table = table
        self._dialect = dialect
        #: the placeholders whose column may be left out when its value is NULL: the
        #: database writes the same NULL (nullable, no default of its own)
        self._omittable = tuple(
            i
            for i, name in enumerate(self.order or ())
            if table.c[name].nullable
            and table.c[name].server_default is None
            and table.c[name].default is None
            and not table.c[name].primary_key
        )
        self._readers: dict[int, tuple[Mapping[str, str], Callable[[Any], Any]]] = {}
        #: the statements without the columns that were NULL in every row, by those
        self._narrower: dict[tuple[int, ...], tuple[str, Callable[[Any], tuple[Any, ...]]]] = {}

    def _compile(
        self,
        read: Mapping[str, str] | None = None,
        prelude: str = "",
        names: Mapping[str, Any] | None = None,
        common: Mapping[str, Any] | None = None,
    ) -> tuple[Any, Any]:
        """``values(row)``: ``row``'s values as the driver takes them, by column name;
        ``parameters(row)``: the same in placeholder order (positional paramstyles), else
        that dict. ``row`` has exactly :attr:`columns`. Both are functions compiled once
        (as dataclasses compile ``__init__``): a column with a processor is written out
        as ``None``'s and ``{}``'s precomputed value or a call, one expression each.
        With ``read``, a column's value is not ``row[name]`` but the expression
        ``read[name]`` (of ``row``, after the statements ``prelude``, with ``names``);
        a value equal to ``common[name]`` is given that value's processed one, worked
        out once (for values whose equal values process alike: lists of strings)."""
        scope: dict[str, Any] = dict(names or {})
        exprs: dict[str, str] = {}
        reads = f"    {prelude}\n" if prelude else ""  # a processed value: read once
        for i, name in enumerate(self.columns):
            expr = f"row[{name!r}]" if read is None else f"({read[name]})"
            if name in self.processors:
                reads += f"    v{i} = {expr}\n"
                scope[f"p{i}"] = self.processors[name]
                expr = f"p{i}(v{i})"
                if name in self._empty:
                    scope[f"e{i}"] = self._empty[name]
                    expr = f"e{i} if type(v{i}) is dict and not v{i} else {expr}"
                if common is not None and name in common:
                    scope[f"k{i}"] = common[name]
                    scope[f"c{i}"] = self.processors[name](common[name])
                    expr = f"c{i} if v{i} == k{i} else {expr}"
                if name in self._none:
                    scope[f"n{i}"] = self._none[name]
                    expr = f"n{i} if v{i} is None else {expr}"
            exprs[name] = f"({expr})"
        values = ", ".join(f"{name!r}: {exprs[name]}" for name in self.columns)
        source = f"def values(row):\n{reads}    return {{{values}}}\n"
        if self.order is not None:
            ordered = ", ".join(exprs[name] for name in self.order)
            source += f"def parameters(row):\n{reads}    return ({ordered},)\n"
        exec(source, scope)  # noqa: S102 - column names as string literals only
        return scope["values"], scope.get("parameters", scope["values"])

    def reader(
        self,
        read: Mapping[str, str],
        prelude: str,
        names: Mapping[str, Any],
        common: Mapping[str, Any] | None = None,
    ) -> Callable[[Any], Sequence[Any] | dict[str, Any]]:
        """:attr:`parameters` of an object rather than of a row dict: ``read[column]`` is
        the expression of the column's value (Python source over ``row``, the object,
        after the statement ``prelude``; ``names`` are the names they use; ``common``
        as in :meth:`_compile`). Compiled once per ``read`` (by identity, with the
        ``common`` of its first call): a row written as a dict and then read back costs
        about what the parameters do."""
        key = id(read)
        found = self._readers.get(key)
        if found is None or found[0] is not read:
            compiled = self._compile(read, prelude, names, common)[1]
            found = self._readers[key] = (read, compiled)
        return found[1]

    def execute_parameters(self, conn: sa.Connection, params: list[Any]) -> None:
        """:meth:`execute_many` of rows already made :attr:`parameters`."""
        sql = self.sql
        if self._omittable and params:
            null = _null_everywhere(params, self._omittable)
            if null:
                sql, keep = self._without(null)
                params = [keep(p) for p in params]
        with driver_cursor(conn, sql, params) as cursor:
            cursor.executemany(sql, params)

    def execute(self, conn: sa.Connection, row: Mapping[str, Any]) -> Any:
        """Insert ``row`` in ``conn``'s transaction; the RETURNING value, if any."""
        params = self.parameters(row)
        with driver_cursor(conn, self.sql, params) as cursor:
            cursor.execute(self.sql, params)
            found = cursor.fetchone() if cursor.description else None
        return found[0] if found else None

    def execute_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` in ``conn``'s transaction with one ``executemany``. With a
        positional paramstyle (SQLite), the nullable columns that are NULL in every row
        are left out of the statement: the rows stored are the same, and the driver
        binds fewer parameters (≈ 0.4 µs each for a ``None`` through ``sqlite3``'s
        adaptation; a plain job's row has 23 NULLs among its 43 columns)."""
        self.execute_parameters(conn, [self.parameters(row) for row in rows])

    def _without(self, null: tuple[int, ...]) -> tuple[str, Callable[[Any], tuple[Any, ...]]]:
        """The SQL without the placeholders ``null``, and what keeps the others of a
        row's parameters (compiled once per such set)."""
        found = self._narrower.get(null)
        if found is None:
            order = self.order or ()
            left = [i for i in range(len(order)) if i not in null]
            narrow = PreparedInsert(self._table, [order[i] for i in left], self._dialect, None)
            if narrow.order != tuple(order[i] for i in left):
                raise ValueError(f"{self._table.name}: unexpected placeholder order")
            found = self._narrower[null] = (narrow.sql, _tuple_getter(left))
        return found


def _null_everywhere(params: Sequence[Sequence[Any]], candidates: Sequence[int]) -> tuple[int, ...]:
    """The positions among ``candidates`` whose value is None in every row of ``params``."""
    null = tuple(i for i in candidates if params[0][i] is None)
    if not null:
        return null
    probe, nones = _tuple_getter(null), (None,) * len(null)
    for p in params:
        if probe(p) != nones:
            null = tuple(i for i in null if p[i] is None)
            if not null:
                return null
            probe, nones = _tuple_getter(null), (None,) * len(null)
    return null


def _tuple_getter(positions: Sequence[int]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter`` of ``positions`` that always answers a tuple."""
    if len(positions) == 1:
        one = positions[0]
        return lambda p: (p[one],)
    return itemgetter(*positions)


@contextmanager
def driver_cursor(conn: sa.Connection, sql: str, params: Any) -> Iterator[Any]:
    """A cursor of the driver's connection under ``conn`` (inside its transaction); a
    driver error comes out as SQLAlchemy's (IntegrityError, OperationalError, …)."""
    try:
        cursor = conn.connection.cursor()
    except conn.dialect.loaded_dbapi.Error as e:  # a connection closed under it
        raise _wrapped(conn, sql, params, None, e) from e
    try:
        yield cursor
    except conn.dialect.loaded_dbapi.Error as e:
        raise _wrapped(conn, sql, params, cursor, e) from e
    finally:
        cursor.close()


@contextmanager
def raw_cursor(conn: sa.Connection, sql: str, params: Any) -> Iterator[Any]:
    """:func:`driver_cursor` for psycopg's ``$n`` placeholders (``psycopg.RawCursor``)."""
    import psycopg  # only a server on PostgreSQL loads it

    cursor = psycopg.RawCursor(cast("psycopg.Connection[Any]", conn.connection.driver_connection))
    try:
        yield cursor
    except psycopg.Error as e:
        raise _wrapped(conn, sql, params, cursor, e) from e
    finally:
        cursor.close()


def _wrapped(conn: sa.Connection, sql: str, params: Any, cursor: Any, error: Any) -> Any:
    """A driver's ``error`` as SQLAlchemy's; a lost connection is invalidated, as
    :meth:`sqlalchemy.Connection.execute` does (a connection held for long is then
    replaced, not used again broken)."""
    lost = conn.dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor)
    base = conn.dialect.loaded_dbapi.Error
    wrapped = exc.DBAPIError.instance(
        sql, params, error, base, dialect=conn.dialect, connection_invalidated=lost
    )
    if lost:
        conn.invalidate(wrapped)
    return wrapped


class PreparedInsertWith:
    """A parent row and one row that refers to it, inserted by one statement: a
    data-modifying CTE (PostgreSQL): one round trip instead of one per row (and one more
    for a ``NOTIFY``).
    ``RETURNING`` gives the parent's ``returning`` column; ``also`` is an SQL expression
    without parameters evaluated once with it (e.g. ``pg_notify(…)``)."""

    def __init__(
        self,
        parent: PreparedInsert,
        child: PreparedInsert,
        also: str | None = None,
    ) -> None:
        if parent.order is not None or child.order is not None:
            raise ValueError("PreparedInsertWith needs a named paramstyle")
        if "RETURNING" not in parent.sql.upper():
            raise ValueError("the parent insert needs a RETURNING column")
        child_sql = child.sql.split(" RETURNING ")[0]  # the child's implicit RETURNING
        for name in child.columns:  # the child's parameters get a prefix of their own
            child_sql = child_sql.replace(f"%({name})s", f"%(child_{name})s")
        extra = f", {also}" if also else ""
        # compiled statements and a constant expression only: no value is in the text
        self.sql = (
            f"WITH parent AS ({parent.sql}) {child_sql} RETURNING (SELECT * FROM parent){extra}"  # noqa: S608
        )
        names = [*parent.columns, *(f"child_{name}" for name in child.columns)]
        #: :attr:`sql` with PostgreSQL's own ``$n`` placeholders, parameters in the order
        #: of ``names``: the driver sends it as it is (psycopg parses a query of this
        #: size and over 50 parameters again on every call otherwise)
        self.raw_sql = _numbered(self.sql, names)
        self.parent = parent
        self.child = child

    def parameters(self, parent: Mapping[str, Any], child: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters of :attr:`raw_sql` for these rows."""
        return (*self.parent.values(parent).values(), *self.child.values(child).values())

    def execute(
        self, conn: sa.Connection, parent: Mapping[str, Any], child: Mapping[str, Any]
    ) -> Any:
        """Insert both rows in ``conn``'s transaction; the parent's RETURNING value."""
        params = self.parameters(parent, child)
        with raw_cursor(conn, self.raw_sql, params) as cursor:
            cursor.execute(self.raw_sql, params)
            found = cursor.fetchone()
        return found[0]


class PreparedRowsWith:
    """Parent rows, each with one row that refers to it, inserted by one statement
    (PostgreSQL: a data-modifying CTE of two ``INSERT … SELECT * FROM unnest(…)``, one
    array parameter per column) instead of one statement per row: one executor start
    for all the rows, a statement-level trigger on the parent table runs once, and the
    statement's text does not grow with the rows (it is prepared like any other).
    Answers each parent row's ``returning`` columns (match them by a key column: the
    order of ``RETURNING`` is not promised)."""

    def __init__(self, parent: PreparedInsert, child: PreparedInsert, returning: str) -> None:
        width = len(parent.columns)
        self.sql = (
            f"WITH parent AS ({_unnest_insert(parent, 0)} RETURNING {returning}), "  # noqa: S608
            f"child AS ({_unnest_insert(child, width)}) SELECT {returning} FROM parent"
        )

    def execute(
        self,
        conn: sa.Connection,
        parents: Sequence[Sequence[Any]],
        children: Sequence[Sequence[Any]],
    ) -> list[tuple[Any, ...]]:
        """Insert ``parents`` (each the parent's values in column order, as
        :attr:`PreparedInsert.values` gives them) and ``children`` (one each, the same)
        in ``conn``'s transaction; the rows ``returning`` names."""
        if len(parents) != len(children):
            raise ValueError("one child row per parent row")
        if not parents:
            return []
        params = [list(column) for column in zip(*parents, strict=True)]
        params.extend(list(column) for column in zip(*children, strict=True))
        with raw_cursor(conn, self.sql, params) as cursor:
            cursor.execute(self.sql, params)
            found: list[tuple[Any, ...]] = cursor.fetchall()
        return found


def _unnest_insert(insert: PreparedInsert, first: int) -> str:
    """``INSERT INTO table (columns) SELECT * FROM unnest($n::type[], …)`` of
    ``insert``'s table and columns, the placeholders numbered from ``first`` + 1, each
    array of the type its one-row placeholder is cast to (without a length, which an
    explicit cast would truncate to: the column's own check refuses too long a value)."""
    table, dialect = insert._table, insert._dialect
    values = insert.sql.split(" VALUES ", 1)[1]
    casts = dict(re.findall(r"%\((\w+)\)s(?:::([A-Z][A-Z ]*[A-Z]))?", values))
    quote = dialect.identifier_preparer.quote
    names, arrays = [], []
    for i, name in enumerate(insert.columns):
        cast = casts[name] or dialect.type_compiler_instance.process(
            table.c[name].type.dialect_impl(dialect)
        )
        names.append(quote(name))
        arrays.append(f"${first + i + 1}::{re.sub(r'[(].*', '', cast)}[]")
    # identifiers and compiled type names only: no value is in the text
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(names)}) "  # noqa: S608
        f"SELECT * FROM unnest({', '.join(arrays)})"
    )


def _numbered(sql: str, names: Sequence[str]) -> str:
    """``sql`` with each ``%(name)s`` replaced by ``$n``, n its place in ``names``."""
    place = {name: i for i, name in enumerate(names, 1)}
    seen: set[str] = set()

    def number(m: re.Match[str]) -> str:
        seen.add(m[1])
        return f"${place[m[1]]}"

    out = re.sub(r"%\((\w+)\)s", number, sql)
    if seen != set(place) or "%" in out:
        raise ValueError("the statement's parameters are not exactly the columns given")
    return out


class PreparedStatement:
    """Any statement compiled once for a dialect and run on the driver's cursor: the
    claim loop's hot reads and writes (candidates, claim, running mark, ends, attempt
    rows, fair-share upsert). Parameters go through the bind processors SQLAlchemy
    would use; so do the rows read (their result processors, chosen by the cursor's
    column types on first use as SQLAlchemy chooses them). No expanding parameters."""

    def __init__(
        self, stmt: sa.ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        keys = list(column_keys) if column_keys is not None else None
        compiled: Any = stmt.compile(dialect=dialect, column_keys=keys)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("PreparedStatement takes no expanding or literal parameters")
        self._compiled = compiled
        self._dialect = dialect
        self.sql: str = compiled.string
        self._order = tuple(compiled.positiontup) if compiled.positional else None
        self._processors = {
            name: process
            for name, bind in compiled.binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        #: the types of the columns read, by name (a SELECT's or a RETURNING's; none for
        #: a text statement), as SQLAlchemy's own result set-up takes them
        self._types = {c.keyname: c.type for c in compiled._result_columns}
        self._results: list[tuple[int, Callable[[Any], Any]]] | None = None
        #: the names of the parameters the statement gives values of its own
        self._fixed: frozenset[str] = frozenset()
        self._fast = self._compile_parameters(compiled)

    def _compile_parameters(self, compiled: Any) -> Callable[[Mapping[str, object]], Any] | None:
        """:meth:`parameters` as a function compiled once (as ``PreparedInsert``'s): each
        value the caller gives through its processor, the statement's own values
        processed once; None where a parameter's value is computed at each call or its
        name is escaped (then SQLAlchemy's ``construct_params`` does it every call)."""
        scope: dict[str, Any] = {}
        lines, exprs = [], {}
        fixed: set[str] = set()
        for i, (bind, name) in enumerate(compiled.bind_names.items()):
            if bind.callable is not None or name in compiled.escaped_bind_names:
                return None
            process = self._processors.get(name)
            if not bind.required:  # a value of the statement's own: processed once
                fixed.update((name, bind.key))  # a caller may give it by either
                scope[f"c{i}"] = bind.value if process is None else process(bind.value)
                exprs[name] = f"c{i}"
                continue
            if bind.key != name:
                return None
            lines.append(f"    v{i} = params[{name!r}]\n")
            if process is not None:
                scope[f"p{i}"] = process
                lines.append(f"    v{i} = p{i}(v{i})\n")
            exprs[name] = f"v{i}"
        if self._order is not None:
            out = "(" + "".join(f"{exprs[name]}, " for name in self._order) + ")"
        else:
            out = "{" + ", ".join(f"{name!r}: {exprs[name]}" for name in exprs) + "}"
        source = "def fast(params):\n" + "".join(lines) + f"    return {out}\n"
        exec(source, scope)  # noqa: S102 - parameter names as string literals only
        self._fixed = frozenset(fixed)
        fast: Callable[[Mapping[str, object]], Any] = scope["fast"]
        return fast

    def parameters(self, params: Mapping[str, object]) -> Any:
        """The driver's parameters for ``params`` (defaults of the statement filled in)."""
        fast = self._fast
        if fast is not None and self._fixed.isdisjoint(params):
            try:
                return fast(params)
            except KeyError:
                pass  # a value is missing: SQLAlchemy's error below
        return self.constructed_parameters(params)

    def constructed_parameters(self, params: Mapping[str, object]) -> Any:
        """:meth:`parameters` as SQLAlchemy makes them (``construct_params``)."""
        values = self._compiled.construct_params(dict(params))
        procs = self._processors
        done = {k: (procs[k](v) if k in procs else v) for k, v in values.items()}
        return done if self._order is None else tuple(done[k] for k in self._order)

    def rowcount(self, conn: sa.Connection, params: Mapping[str, object]) -> int:
        """Run with ``params`` in ``conn``'s transaction; the number of rows it changed."""
        args = self.parameters(params)
        with driver_cursor(conn, self.sql, args) as cursor:
            cursor.execute(self.sql, args)
            return int(cursor.rowcount)

    def rows(self, conn: sa.Connection, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        """Run with ``params`` in ``conn``'s transaction; the rows it gives (a SELECT's or
        a RETURNING's), their values as SQLAlchemy would give them."""
        args = self.parameters(params)
        with driver_cursor(conn, self.sql, args) as cursor:
            cursor.execute(self.sql, args)
            found = cursor.fetchall()
            if not found:
                return []
            results = self._results
            if results is None:
                results = self._results = self._result_processors(cursor.description)
        if not results:
            return [tuple(r) for r in found]
        out = []
        for r in found:
            values = list(r)
            for i, process in results:
                values[i] = process(values[i])
            out.append(tuple(values))
        return out

    def mappings(self, conn: sa.Connection, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """Like :meth:`rows`, each row by column name."""
        if not self._types:
            raise ValueError("the statement names no columns")
        names = list(self._types)
        return [dict(zip(names, r, strict=True)) for r in self.rows(conn, params)]

    def execute_many(self, conn: sa.Connection, rows: Sequence[Mapping[str, object]]) -> None:
        """Run once per row of ``rows`` with one ``executemany``."""
        args: Any = [self.parameters(row) for row in rows]
        with driver_cursor(conn, self.sql, args) as cursor:
            cursor.executemany(self.sql, args)

    def _result_processors(self, description: Any) -> list[tuple[int, Callable[[Any], Any]]]:
        """The columns whose values need processing, with their processors."""
        types = list(self._types.values())
        if len(types) != len(description):  # text: the driver's values as they are
            return []
        found = (
            t.dialect_impl(self._dialect).result_processor(self._dialect, d[1])
            for t, d in zip(types, description, strict=True)
        )
        return [(i, p) for i, p in enumerate(found) if p is not None]


_CACHE: dict[tuple[str, str, str, tuple[str, ...], str | None], PreparedInsert] = {}


def prepared_insert(
    table: sa.Table, columns: tuple[str, ...], dialect: Dialect, returning: str | None = None
) -> PreparedInsert:
    """The :class:`PreparedInsert` for these arguments, compiled on first use."""
    key = (dialect.name, dialect.driver, table.name, columns, returning)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = PreparedInsert(table, columns, dialect, returning)
    return found


_WITH_CACHE: dict[tuple[Any, ...], PreparedInsertWith] = {}


def prepared_insert_with(
    parent: tuple[sa.Table, tuple[str, ...], str],
    child: tuple[sa.Table, tuple[str, ...]],
    dialect: Dialect,
    also: str | None = None,
) -> PreparedInsertWith:
    """The :class:`PreparedInsertWith` of ``parent`` (table, columns, returning) and
    ``child`` (table, columns), compiled on first use."""
    key = (dialect.name, dialect.driver, parent[0].name, parent[1:], child[0].name, child[1], also)
    found = _WITH_CACHE.get(key)
    if found is None:
        found = _WITH_CACHE[key] = PreparedInsertWith(
            prepared_insert(parent[0], parent[1], dialect, parent[2]),
            prepared_insert(child[0], child[1], dialect),
            also,
        )
    return found


_ROWS_CACHE: dict[tuple[Any, ...], PreparedRowsWith] = {}


def prepared_rows_with(
    parent: tuple[sa.Table, tuple[str, ...], str],
    child: tuple[sa.Table, tuple[str, ...]],
    dialect: Dialect,
) -> PreparedRowsWith:
    """The :class:`PreparedRowsWith` of ``parent`` (table, columns, the columns each
    inserted row answers, as SQL) and ``child`` (table, columns), made on first use."""
    key = (dialect.name, dialect.driver, parent[0].name, parent[1:], child[0].name, child[1])
    found = _ROWS_CACHE.get(key)
    if found is None:
        found = _ROWS_CACHE[key] = PreparedRowsWith(
            prepared_insert(parent[0], parent[1], dialect),
            prepared_insert(child[0], child[1], dialect),
            parent[2],
        )
    return found
