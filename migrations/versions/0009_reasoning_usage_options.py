"""replies keep reasoning, reasoning and cached tokens, options sent

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reasoning', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reasoning_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cached_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('options', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('options')
        batch_op.drop_column('cached_tokens')
        batch_op.drop_column('reasoning_tokens')
        batch_op.drop_column('reasoning')
