"""POST /api/ai_chat/attachments and GET or DELETE /api/ai_chat/attachments/{id}."""

import io

import marshmallow as ma
from flask import Request, Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort
from werkzeug.http import quote_etag

from ..api import Blueprint, NoticeSchema
from ..auth.access import current_user, missing
from ..errors import ACCOUNT_GONE
from ..extensions import db
from ..models import MAX_ID
from ..security import REVALIDATE
from . import store
from .models import Attachment

blp = Blueprint(
    "attachments",
    __name__,
    url_prefix="/api/ai_chat/attachments",
    description="Images to send with your messages (PNG, JPEG, GIF or WebP).",
)

ATTACHMENT_ID = f"<int(min=1, max={MAX_ID}):attachment_id>"
# The multipart envelope around the file: its boundaries and part headers.
FORM_OVERHEAD = 64 * 1024


class AttachmentSchema(ma.Schema):
    id = ma.fields.Integer()
    media_type = ma.fields.String(metadata={"description": "Recognised from the bytes"})
    bytes = ma.fields.Integer(attribute="size")
    width = ma.fields.Integer()
    height = ma.fields.Integer()
    sha256 = ma.fields.String(metadata={"description": "SHA-256 of the bytes, in hex"})
    created_at = ma.fields.DateTime()


class UploadSchema(ma.Schema):
    file = ma.fields.Raw(
        required=True, metadata={"type": "string", "format": "binary", "description": "The image"}
    )


class UploadRequest(Request):
    """Flask's request, a file part of a body whose length is known and within the request's
    max_content_length received in memory: its bytes are read whole anyway (to check them and
    store them), so spooling them to a temporary file first would only copy them twice more."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        bound = self.max_content_length
        if total_content_length is not None and bound is not None and total_content_length <= bound:
            return io.BytesIO()
        return super()._get_file_stream(
            total_content_length, content_type, filename, content_length
        )


def _contents(stream, limit: int) -> bytes:
    """The file part's bytes (up to `limit` + 1): a BytesIO's own buffer, not a copy of it."""
    if isinstance(stream, io.BytesIO):
        return stream.getvalue()
    return stream.read(limit + 1)


def _too_large(limit: int):
    abort(413, message=f"The file is over ATTACHMENT_MAX_BYTES ({limit} bytes).")


@blp.route("")
class Attachments(MethodView):
    @blp.login_required(keys=True)
    @blp.doc(requestBody={"content": {"multipart/form-data": {"schema": UploadSchema}}})
    @blp.response(201, AttachmentSchema)
    @blp.errors(409, 413, 422)
    def post(self):
        """Upload an image (multipart/form-data, field `file`) to send with a message

        PNG, JPEG, GIF or WebP, recognised from the bytes (the declared type and file name are
        not trusted): anything else, or a truncated or corrupt image, is a 422, and so is one
        over ATTACHMENT_MAX_PIXELS. Over ATTACHMENT_MAX_BYTES: 413. Your attachments' total
        over ATTACHMENT_QUOTA_BYTES: 409. One no message uses after ATTACHMENT_ORPHAN_HOURS
        is deleted.
        """
        limit = current_app.config["ATTACHMENT_MAX_BYTES"]
        if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
            _too_large(limit)
        request.max_content_length = limit + FORM_OVERHEAD
        unknown = sorted(set(request.form) | (set(request.files) - {"file"}))
        if unknown:
            reason = "Unknown field."
            abort(422, message=f"{unknown[0]}: {reason}", errors={"files": {unknown[0]: [reason]}})
        upload = request.files.get("file")
        if upload is None:
            reason = "Missing data for required field (a multipart/form-data file part)."
            abort(422, message=f"file: {reason}", errors={"files": {"file": [reason]}})
        try:
            data = _contents(upload.stream, limit)
        finally:
            upload.close()  # one of unknown length was spooled to a temporary file
        if len(data) > limit:
            _too_large(limit)
        info = store.checked(data)
        try:
            attachment = store.add(current_user.id, data, info)
            db.session.commit()
        except store.QuotaFull as e:
            db.session.rollback()
            abort(store.QUOTA_FULL, message=str(e))
        except LookupError:
            db.session.rollback()
            abort(401, message=ACCOUNT_GONE)
        return attachment


def _own_or_404(attachment_id: int) -> Attachment:
    attachment = store.own(current_user.id, attachment_id)
    if attachment is None:
        missing(current_user.id, "Attachment not found")
    return attachment


@blp.route(f"/{ATTACHMENT_ID}")
class AttachmentById(MethodView):
    @blp.login_required(keys=True)
    @blp.errors(404)
    @blp.doc(
        responses={
            "200": {
                "description": "The image's bytes",
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            "304": {"description": "Not modified (If-None-Match)"},
        }
    )
    def get(self, attachment_id):
        """One of your attachments' bytes, as the image type recognised from them"""
        attachment = _own_or_404(attachment_id)
        headers = {
            "ETag": quote_etag(attachment.sha256),
            "Cache-Control": REVALIDATE,
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="attachment-{attachment.id}.'
            f'{attachment.media_type.removeprefix("image/")}"',
        }
        if request.if_none_match.contains(attachment.sha256):
            return Response(status=304, headers=headers)
        data = store.data_of([attachment.id]).get(attachment.id)
        if data is None:  # deleted since it was found, or its account was
            missing(current_user.id, "Attachment not found")
        return Response(data, mimetype=attachment.media_type, headers=headers)

    @blp.login_required(keys=True)
    @blp.errors(404)
    @blp.response(200, NoticeSchema)
    def delete(self, attachment_id):
        """Delete one of your attachments (the message it went with shows it no more)"""
        attachment = _own_or_404(attachment_id)
        db.session.delete(attachment)
        db.session.commit()
        return {"message": "Attachment deleted"}
