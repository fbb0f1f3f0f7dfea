"""full-text search: tsvector columns on PostgreSQL, FTS5 tables on SQLite

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 08:00:00

The same objects polygenix/chat/search.py installs on create_all, written out here so that this
revision stays what it was whatever that module becomes. Existing messages and titles are
indexed: PostgreSQL computes a generated column for every row as it adds it; SQLite's FTS5
'rebuild' reads the whole table.
"""
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

INDEXED = (('messages', 'content'), ('chat_sessions', 'title'))


def upgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for table, column in INDEXED:
        if not sqlite:
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
                f"GENERATED ALWAYS AS (to_tsvector('english', replace({column}, '<', ' '))) STORED"
            )
            op.execute(
                f"CREATE INDEX ix_{table}_search_vector ON {table} USING gin (search_vector)"
            )
            continue
        fts = f'{table}_fts'
        delete = (
            f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
        )
        insert = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
            "content_rowid='id', tokenize='porter unicode61')"
        )
        op.execute(f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END")
        op.execute(f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END")
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} "
            f"BEGIN {delete} {insert} END"
        )
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def downgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for table, _ in INDEXED:
        if not sqlite:
            op.execute(f"DROP INDEX ix_{table}_search_vector")
            op.execute(f"ALTER TABLE {table} DROP COLUMN search_vector")
            continue
        for trigger in ('insert', 'delete', 'update'):
            op.execute(f"DROP TRIGGER {table}_fts_{trigger}")
        op.execute(f"DROP TABLE {table}_fts")
