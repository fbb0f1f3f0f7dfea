"""The attachments table: an uploaded image's bytes, in the database with the conversation."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models import UTCDateTime, utcnow


class Attachment(db.Model):
    """An image a user uploaded (or sent inline through /v1), recognised from its bytes.

    `message_id` is the message it went with; null until then (an orphan past
    ATTACHMENT_ORPHAN_HOURS is swept). It goes with its message, and with its user.
    """

    __tablename__ = "attachments"
    __table_args__ = (
        # A message's attachments, in the order they were given.
        Index("ix_attachments_message_id", "message_id", "position"),
        # A user's quota: one index range.
        Index("ix_attachments_user_id", "user_id"),
        # The orphan sweep: only attachments no message uses.
        Index(
            "ix_attachments_orphans",
            "created_at",
            sqlite_where=text("message_id IS NULL"),
            postgresql_where=text("message_id IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    media_type: Mapped[str] = mapped_column(String(20))  # sniffed: image/png, jpeg, gif, webp
    size: Mapped[int]  # the API's `bytes`
    width: Mapped[int]
    height: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Attachment {self.id} user={self.user_id} message={self.message_id}>"


class AttachmentData(db.Model):
    """An attachment's bytes, in a table of their own: giving an attachment to its message
    updates a small row, never rewriting the image (SQLite rewrites a whole row, BLOB
    included, when any column of it changes); listings never read them."""

    __tablename__ = "attachment_data"

    attachment_id: Mapped[int] = mapped_column(
        ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)
