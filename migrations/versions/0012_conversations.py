"""superseded messages, session activity time, per-session system prompt and model, a
partial index of leased replies

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # Partial: only replies being streamed. As a whole-column index, planners sent queries for
    # the shown messages (lease_until IS NULL, nearly all of them) through it.
    op.drop_index('ix_messages_lease_until', table_name='messages')
    op.create_index(
        'ix_messages_lease_until', 'messages', ['lease_until'], unique=False,
        sqlite_where=sa.text('lease_until IS NOT NULL'),
        postgresql_where=sa.text('lease_until IS NOT NULL'),
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('superseded', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('system_prompt', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('model', sa.String(length=200), nullable=True))
    # A session was last active with its newest message (or when it was made).
    op.execute(
        "UPDATE chat_sessions SET updated_at = coalesce("
        " (SELECT max(m.created_at) FROM messages AS m WHERE m.session_id = chat_sessions.id),"
        " created_at)"
    )
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.alter_column('updated_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.create_index(
            'ix_chat_sessions_user_id_updated_at', ['user_id', 'updated_at', 'number'], unique=False
        )
        batch_op.create_index(
            'ix_chat_sessions_user_id_changed_at', ['user_id', 'changed_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('chat_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_sessions_user_id_changed_at')
        batch_op.drop_index('ix_chat_sessions_user_id_updated_at')
        batch_op.drop_column('model')
        batch_op.drop_column('system_prompt')
        batch_op.drop_column('updated_at')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('superseded')
    op.drop_index('ix_messages_lease_until', table_name='messages')
    op.create_index('ix_messages_lease_until', 'messages', ['lease_until'], unique=False)
