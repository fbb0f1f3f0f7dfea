"""Whether the database has the schema this PolyGenix's migrations make.

An installed wheel carries the migrations as polygenix/migrations; a checkout keeps them in its
top-level migrations/ folder. A database that answers but was never migrated, or is behind, is an
operator's step away from working (`polygenix db upgrade`): it is said so, at `polygenix serve`'s
start and in the answer to any request that meets a missing table or column, and never passed off
as a database that cannot be reached (503).
"""

from functools import cache
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

UPGRADE = "run `polygenix db upgrade`"
NOT_MIGRATED = f"The database is not migrated: {UPGRADE}"
# PostgreSQL's undefined_table and undefined_column.
_UNDEFINED = {"42P01", "42703"}
_SQLITE_MISSING = ("no such table", "no such column", "has no column named")


def migrations_directory() -> Path:
    """The installed package's migrations, or a checkout's top-level folder."""
    here = Path(__file__).resolve().parent
    installed = here / "migrations"
    return installed if (installed / "env.py").is_file() else here.parent / "migrations"


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(migrations_directory()))


def problem(connection: Connection) -> str | None:
    """What is wrong with the database's schema, or None when it is current.

    A database at a revision these migrations do not know was migrated by a newer PolyGenix: it
    passes, so that hosts still on the old version keep serving while a rolling upgrade runs.
    """
    scripts = _scripts()
    current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(scripts.get_heads())
    if not current:
        return f"The database has no PolyGenix tables: {UPGRADE}"
    known = {revision.revision for revision in scripts.walk_revisions()}
    if current == heads or current - known:
        return None
    return (
        f"The database is at revision {', '.join(sorted(current))} and this PolyGenix needs "
        f"{', '.join(sorted(heads))}: {UPGRADE}"
    )


def is_missing_schema(error: Exception) -> bool:
    """Whether a database error says a table or column is missing (an un-migrated database)."""
    cause = getattr(error, "orig", None) or error
    if getattr(cause, "sqlstate", None) in _UNDEFINED:
        return True
    text = str(cause).lower()
    return type(cause).__module__ == "sqlite3" and any(m in text for m in _SQLITE_MISSING)
