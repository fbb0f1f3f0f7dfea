"""a per-user session number counter, retry keys of failed /v1 questions

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 11:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN on SQLite too: `users` is not rebuilt, and keeps AUTOINCREMENT.
    op.add_column(
        'users',
        sa.Column('last_session_number', sa.Integer(), server_default='0', nullable=False),
    )
    op.execute(
        "UPDATE users SET last_session_number = coalesce("
        " (SELECT max(s.number) FROM chat_sessions AS s WHERE s.user_id = users.id), 0)"
    )
    op.add_column('messages', sa.Column('retry_key', sa.String(length=64), nullable=True))
    op.create_index(
        'ix_messages_retry_key', 'messages', ['retry_key'], unique=False,
        sqlite_where=sa.text('retry_key IS NOT NULL'),
        postgresql_where=sa.text('retry_key IS NOT NULL'),
    )


def downgrade():
    op.drop_index('ix_messages_retry_key', table_name='messages')
    op.drop_column('messages', 'retry_key')
    op.drop_column('users', 'last_session_number')
