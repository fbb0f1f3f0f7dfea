"""stream leases, session change times

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', sa.DateTime(), nullable=True))
    # A session last changed with its newest message (or when it was made).
    op.execute(
        "UPDATE chat_sessions SET changed_at = coalesce("
        " (SELECT max(m.created_at) FROM messages AS m WHERE m.session_id = chat_sessions.id),"
        " created_at)"
    )
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.alter_column('changed_at', existing_type=sa.DateTime(), nullable=False)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_lease_until'), ['lease_until'], unique=False)


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_lease_until'))
        batch_op.drop_column('lease_until')
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.drop_column('changed_at')
