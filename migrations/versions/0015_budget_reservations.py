"""budget reservations: what calls in flight may use

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('budget_reservations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('cost_nanousd', sa.BigInteger(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_budget_reservations_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_reservations')),
    sqlite_autoincrement=True,
    )
    op.create_index(op.f('ix_budget_reservations_user_id'), 'budget_reservations', ['user_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_budget_reservations_user_id'), table_name='budget_reservations')
    op.drop_table('budget_reservations')
