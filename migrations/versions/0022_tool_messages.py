"""messages keep an assistant's tool calls and the call a tool result answers

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 06:30:00

"""

from alembic import op
import sqlalchemy as sa


revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    # Columns added in place (ALTER TABLE ... ADD COLUMN): on SQLite the table is not rebuilt,
    # so it keeps its AUTOINCREMENT.
    op.add_column("messages", sa.Column("tool_calls", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("tool_call_id", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("messages", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("tool_call_id")
        batch_op.drop_column("tool_calls")
