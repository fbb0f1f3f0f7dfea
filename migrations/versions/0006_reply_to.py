"""replies name the message they answer

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 12:35:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_to_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_messages_reply_to_id_messages'), 'messages', ['reply_to_id'], ['id'], ondelete='CASCADE')
    # Earlier replies answer the user message just before them in their session.
    op.execute(
        "UPDATE messages SET reply_to_id = ("
        " SELECT max(q.id) FROM messages AS q"
        " WHERE q.session_id = messages.session_id AND q.is_bot = false AND q.id < messages.id"
        ") WHERE is_bot = true"
    )


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_reply_to_id_messages'), type_='foreignkey')
        batch_op.drop_column('reply_to_id')
