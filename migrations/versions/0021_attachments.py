"""attachments: images sent with messages, their bytes in the database

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 06:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('media_type', sa.String(length=20), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_attachments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_attachments_message_id', 'attachments', ['message_id', 'position'], unique=False)
    op.create_index('ix_attachments_user_id', 'attachments', ['user_id'], unique=False)
    op.create_index('ix_attachments_orphans', 'attachments', ['created_at'], unique=False, sqlite_where=sa.text('message_id IS NULL'), postgresql_where=sa.text('message_id IS NULL'))
    op.create_table('attachment_data',
    sa.Column('attachment_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'], name=op.f('fk_attachment_data_attachment_id_attachments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('attachment_id', name=op.f('pk_attachment_data')),
    )


def downgrade():
    op.drop_table('attachment_data')
    op.drop_index('ix_attachments_orphans', table_name='attachments')
    op.drop_index('ix_attachments_user_id', table_name='attachments')
    op.drop_index('ix_attachments_message_id', table_name='attachments')
    op.drop_table('attachments')
