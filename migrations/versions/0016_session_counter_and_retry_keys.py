"""a per-user session number counter

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


def downgrade():
    op.drop_column('users', 'last_session_number')
