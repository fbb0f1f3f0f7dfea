"""ids never reused again on SQLite, stream lease tokens

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 09:00:00

Batch migrations 0008 and 0012 rebuilt `chat_sessions` and `messages` on SQLite without
AUTOINCREMENT, so SQLite handed the highest id out again once its row was deleted. Every table
whose integer ids are exposed or referenced is rebuilt here if it lacks AUTOINCREMENT (rows,
ids and indexes kept), its sqlite_sequence set to at least its highest id, and the full-text
search triggers of a rebuilt `messages` or `chat_sessions` (dropped with the old table)
installed again. The rebuilt table keeps every row's id, which is its FTS5 rowid, so the search
index stays valid and is not rebuilt. Ids freed before this upgrade are unknown to SQLite (it
kept no record of them) and may be handed out once more; none is after it.

A streamed reply also carries a lease token: the stream's writes name it, so they never touch
a row that is no longer the stream's own.

PostgreSQL's sequences never go back: there, only the column is added.
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# Tables with integer ids that are exposed (users, sessions, messages, keys) or referenced.
TABLES = ('users', 'chat_sessions', 'messages', 'api_keys')
# Indexed for search (see migration 0013): (table, indexed column).
SEARCHED = {'messages': 'content', 'chat_sessions': 'title'}


def _autoincrement(table):
    sql = op.get_bind().exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar()
    return 'AUTOINCREMENT' in (sql or '').upper()


def _search_triggers(table, column):
    fts = f'{table}_fts'
    delete = (
        f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
    )
    insert = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"
    return [
        f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {column} ON {table} "
        f"BEGIN {delete} {insert} END",
    ]


def _rebuild_sqlite():
    bind = op.get_bind()
    for table in TABLES:
        if not _autoincrement(table):
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
            ):
                pass
        # At least the highest id, and never lower than a sequence already kept.
        highest = bind.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar()
        kept = bind.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
        ).scalar()
        if kept is None:
            bind.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest)
            )
        elif kept < highest:
            bind.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table)
            )
    for table, column in SEARCHED.items():
        for statement in _search_triggers(table, column):
            op.execute(statement)


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_sqlite()
    op.add_column('messages', sa.Column('lease_token', sa.String(length=32), nullable=True))


def downgrade():
    # AUTOINCREMENT stays: ids handed out twice were the defect, not a schema to go back to.
    op.drop_column('messages', 'lease_token')
