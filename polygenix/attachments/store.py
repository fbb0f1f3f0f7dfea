"""Attachments' life: stored (within the user's quota), found for their owner, given to a
message, read back as a model's image parts, and swept once no message uses them."""

from collections.abc import Iterable, Sequence
from datetime import timedelta

from flask import current_app
from flask_smorest import abort
from sqlalchemy import bindparam, case, delete, func, insert, select, update

from .. import clock
from ..auth.access import missing
from ..extensions import db
from ..models import User
from ..providers.messages import ContentPart, ImagePart, base64_source
from .images import ImageInfo, InvalidImage, TooManyPixels, inspect
from .models import Attachment, AttachmentData

QUOTA_FULL = 409  # a per-user quota that is full: the state of the account, not the request

_LOCK_USER = (
    update(User.__table__)
    .where(User.__table__.c.id == bindparam("user_id"))
    .values(last_session_number=User.__table__.c.last_session_number)
)


_INSERT_DATA = insert(AttachmentData.__table__)


class QuotaFull(Exception):
    """The user's attachments would be over ATTACHMENT_QUOTA_BYTES."""


def checked(data: bytes) -> ImageInfo:
    """The image `data` holds, or the 422 that says why it is not one PolyGenix takes."""
    try:
        return inspect(data, current_app.config["ATTACHMENT_MAX_PIXELS"])
    except TooManyPixels as e:
        abort(422, message=str(e), errors={"files": {"file": [str(e)]}})
    except InvalidImage as e:
        abort(422, message=str(e), errors={"files": {"file": [str(e)]}})


def _used(user_id: int) -> int:
    return db.session.scalar(
        select(func.coalesce(func.sum(Attachment.size), 0)).where(Attachment.user_id == user_id)
    )


def _over_quota(used: int, size: int) -> str | None:
    quota = current_app.config["ATTACHMENT_QUOTA_BYTES"]
    if used + size <= quota:
        return None
    return (
        f"Your attachments would take {used + size} bytes, over your quota of {quota}: "
        "delete some (or the chats that use them) first."
    )


def room_for(user_id: int, size: int) -> None:
    """A 409 unless `size` more bytes fit in the user's quota (a check before a model call;
    the store that follows does not count again)."""
    refusal = _over_quota(_used(user_id), size)
    if refusal:
        abort(QUOTA_FULL, message=refusal)


def add(
    user_id: int,
    data: bytes,
    info: ImageInfo,
    message_id: int | None = None,
    position: int = 0,
    *,
    quota: bool = True,
) -> Attachment:
    """A new attachment, in the caller's transaction. With `quota`, QuotaFull if the user's
    total would be over ATTACHMENT_QUOTA_BYTES: the user's row is locked first, so uploads of
    one user at once are counted one after the other (and a deleted account stores nothing)."""
    if quota:
        if db.session.execute(_LOCK_USER, {"user_id": user_id}).rowcount != 1:
            raise LookupError("user gone")
        refusal = _over_quota(_used(user_id), info.size)
        if refusal:
            raise QuotaFull(refusal)
    attachment = Attachment(
        user_id=user_id,
        message_id=message_id,
        position=position,
        media_type=info.media_type,
        size=info.size,
        width=info.width,
        height=info.height,
        sha256=info.sha256,
        created_at=clock.now(),
    )
    db.session.add(attachment)
    db.session.flush()
    # Inserted at once, not flushed from the session: the unit of work would only pass the
    # megabyte along.
    db.session.execute(_INSERT_DATA, {"attachment_id": attachment.id, "data": data})
    return attachment


def own(user_id: int, attachment_id: int) -> Attachment | None:
    return db.session.scalar(
        select(Attachment).where(Attachment.id == attachment_id, Attachment.user_id == user_id)
    )


def _invalid_ids(reason: str) -> None:
    abort(422, message=f"attachment_ids: {reason}", errors={"json": {"attachment_ids": [reason]}})


def _checked_ids(ids: Sequence[int]) -> None:
    if len(set(ids)) != len(ids):
        _invalid_ids("An attachment may be given only once in a message.")
    most = current_app.config["ATTACHMENTS_PER_MESSAGE"]
    if len(ids) > most:
        _invalid_ids(f"At most {most} attachments per message.")


def given_images(
    user_id: int, ids: Sequence[int], message_id: int | None = None
) -> list[ImagePart]:
    """The images of the caller's attachments `ids`, in that order, for a message (`message_id`
    when it exists already: its own attachments may be given again), the attachments and their
    bytes read in one query. An id twice is a 422; an unknown one or another user's a 404 (a 401
    if the caller's account, and the attachments with it, went since they were authenticated);
    one that went with another message a 409."""
    _checked_ids(ids)
    if not ids:
        return []
    rows = db.session.execute(
        select(Attachment.id, Attachment.message_id, Attachment.media_type, AttachmentData.data)
        .join(AttachmentData, AttachmentData.attachment_id == Attachment.id)
        .where(Attachment.id.in_(ids), Attachment.user_id == user_id)
    )
    found = {row.id: row for row in rows}
    for i in ids:
        if i not in found:
            missing(user_id, f"Attachment {i} not found")
        if found[i].message_id not in (None, message_id):
            abort(
                409,
                message=f"Attachment {i} already goes with another message: upload it again.",
            )
    return [image_part(found[i].media_type, found[i].data) for i in ids]


def attach(user_id: int, message_id: int, ids: Sequence[int]) -> None:
    """In the caller's transaction: `ids` (resolved earlier) go with message `message_id`, in
    order; the message's other attachments are let go (the orphan sweep takes them). An id that
    went meanwhile (deleted, swept) is skipped. One UPDATE, whatever the number of ids."""
    let_go = Attachment.message_id == message_id
    if ids:
        let_go &= Attachment.id.not_in(ids)
        taken = Attachment.id.in_(ids) & (Attachment.user_id == user_id)
        taken &= Attachment.message_id.is_(None) | (Attachment.message_id == message_id)
        values = {
            "message_id": case((taken, message_id), else_=None),
            "position": case(
                {attachment_id: position for position, attachment_id in enumerate(ids)},
                value=Attachment.id,
                else_=Attachment.position,
            ),
        }
        where = let_go | taken
    else:
        values, where = {"message_id": None}, let_go
    db.session.execute(
        update(Attachment).where(where).values(values).execution_options(synchronize_session=False)
    )


_LISTED = (
    Attachment.id,
    Attachment.message_id,
    Attachment.media_type,
    Attachment.size,
    Attachment.width,
    Attachment.height,
)


def listed(message_ids: Iterable[int]) -> dict[int, list[dict]]:
    """Each message's attachments as the API shows them (no bytes read), by message id."""
    ids = list(message_ids)
    shown: dict[int, list[dict]] = {}
    if not ids:
        return shown
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        rows = db.session.execute(
            select(*_LISTED)
            .where(Attachment.message_id.in_(chunk))
            .order_by(Attachment.message_id, Attachment.position, Attachment.id)
        )
        for row in rows:
            shown.setdefault(row.message_id, []).append(
                {
                    "id": row.id,
                    "media_type": row.media_type,
                    "bytes": row.size,
                    "width": row.width,
                    "height": row.height,
                }
            )
    return shown


def image_part(media_type: str, data: bytes) -> ImagePart:
    return {"type": "image", "source": base64_source(media_type, data)}


def parts(text: str, images: Sequence[ImagePart]) -> str | list[ContentPart]:
    """A message's content: its text alone, or its text then its images."""
    if not images:
        return text
    return [{"type": "text", "text": text}, *images]


def images_for(message_ids: Sequence[int], newest: int) -> dict[int, list[ImagePart]]:
    """The images of the newest `newest` attachments of these messages, by message id: what a
    turn sends again of its earlier messages' images (the bytes of no more are read)."""
    if not message_ids or newest <= 0:
        return {}
    rows = db.session.execute(
        select(Attachment.message_id, Attachment.media_type, AttachmentData.data)
        .join(AttachmentData, AttachmentData.attachment_id == Attachment.id)
        .where(Attachment.message_id.in_(list(message_ids)))
        .order_by(Attachment.message_id.desc(), Attachment.position.desc())
        .limit(newest)
    ).all()
    found: dict[int, list[ImagePart]] = {}
    for row in reversed(rows):
        found.setdefault(row.message_id, []).append(image_part(row.media_type, row.data))
    return found


def data_of(attachment_ids: Sequence[int]) -> dict[int, bytes]:
    """The bytes of these attachments, by id (one query)."""
    if not attachment_ids:
        return {}
    rows = db.session.execute(
        select(AttachmentData.attachment_id, AttachmentData.data).where(
            AttachmentData.attachment_id.in_(list(attachment_ids))
        )
    )
    return {row.attachment_id: row.data for row in rows}


def sweep_orphans(hours: float | None = None) -> int:
    """Delete the attachments no message uses that are older than ATTACHMENT_ORPHAN_HOURS."""
    if hours is None:
        hours = current_app.config["ATTACHMENT_ORPHAN_HOURS"]
    cutoff = clock.now() - timedelta(hours=hours)
    count = db.session.execute(
        delete(Attachment)
        .where(Attachment.message_id.is_(None), Attachment.created_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return count
