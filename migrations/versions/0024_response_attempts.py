"""responses: failed and retried responses (question, retry key; reply and session optional)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 09:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table(
        'responses', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.add_column(sa.Column('question_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('retry_key', sa.String(length=64), nullable=True))
        batch_op.alter_column('session_id', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('reply_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f('fk_responses_question_id_messages'), 'messages', ['question_id'], ['id'],
            ondelete='CASCADE',
        )
        batch_op.create_index(batch_op.f('ix_responses_question_id'), ['question_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_responses_retry_key'), ['retry_key'])
    op.execute(
        "UPDATE responses SET question_id ="
        " (SELECT m.reply_to_id FROM messages AS m WHERE m.id = responses.reply_id)"
    )


def downgrade():
    # Responses without a reply (failed, or under way) cannot be kept by the older schema.
    op.execute("DELETE FROM responses WHERE reply_id IS NULL OR session_id IS NULL")
    with op.batch_alter_table(
        'responses', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_responses_retry_key'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_responses_question_id'))
        batch_op.drop_constraint(batch_op.f('fk_responses_question_id_messages'), type_='foreignkey')
        batch_op.alter_column('reply_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('session_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('retry_key')
        batch_op.drop_column('question_id')
