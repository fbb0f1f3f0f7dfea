"""ids never reused, tokens bound to their account, refresh grace, rate-limit counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00

SQLite reuses the highest rowid of a table once that row is deleted unless the table is
AUTOINCREMENT, which needs the table rebuilt. PostgreSQL's sequences never go back.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ('users', 'chat_sessions', 'messages')


def _random_key():
    if op.get_bind().dialect.name == 'sqlite':
        return "lower(hex(randomblob(16)))"
    return "replace(gen_random_uuid()::text, '-', '')"


def upgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_key', sa.String(length=32), nullable=True))
    # Existing tokens carry no key: everyone logs in again once.
    op.execute(f"UPDATE users SET token_key = {_random_key()}")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('token_key', existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_column('token_version')
    if sqlite:
        for table in TABLES:
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
            ):
                pass

    with op.batch_alter_table('revoked_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(), nullable=True))

    op.create_table('rate_limit_counts',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limit_counts'))
    )
    with op.batch_alter_table('rate_limit_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limit_counts_expires_at'), ['expires_at'], unique=False)


def downgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('rate_limit_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limit_counts_expires_at'))
    op.drop_table('rate_limit_counts')

    with op.batch_alter_table('revoked_tokens', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')

    if sqlite:
        for table in reversed(TABLES):
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': False}
            ):
                pass
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_column('token_key')
