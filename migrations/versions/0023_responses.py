"""responses: the Responses API's stored responses

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 06:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('reply_id', sa.Integer(), nullable=False),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['previous_id'], ['responses.id'], name=op.f('fk_responses_previous_id_responses'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reply_id'], ['messages.id'], name=op.f('fk_responses_reply_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['chat_sessions.id'], name=op.f('fk_responses_session_id_chat_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_responses_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_responses')),
    sa.UniqueConstraint('public_id', name=op.f('uq_responses_public_id')),
    sqlite_autoincrement=True,
    )
    for column in ('previous_id', 'reply_id', 'session_id', 'user_id'):
        op.create_index(op.f(f'ix_responses_{column}'), 'responses', [column], unique=False)


def downgrade():
    for column in ('previous_id', 'reply_id', 'session_id', 'user_id'):
        op.drop_index(op.f(f'ix_responses_{column}'), table_name='responses')
    op.drop_table('responses')
