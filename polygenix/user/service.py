"""Creating and deleting users, and deciding who may see whom."""

from flask_smorest import abort
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, OperationalError

from ..auth.access import current_user, fresh_login
from ..errors import Conflict
from ..extensions import db
from ..limits import password_attempt
from ..models import User, normalize_email


def create_user(*, name: str, email: str, password: str, is_admin: bool = False) -> User:
    """Insert and commit a user; the unique index, not a prior lookup, decides races."""
    user = User(name=name, email=normalize_email(email), is_admin=is_admin)
    user.password = password
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"Email {user.email} is already registered") from None
    return user


# An account's deletion is one DELETE whose cascade reaches every table naming the user; a write
# of theirs under way can lock those rows in another order, and PostgreSQL then ends one of
# the two (deadlock detected). Rolled back, the deletion holds nothing: it is sent again.
DELETE_ATTEMPTS = 3
DEADLOCK_DETECTED = "40P01"  # SQLSTATE


def delete_account(user_id: int) -> None:
    """Delete the user with everything of theirs (ON DELETE CASCADE), committed."""
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            db.session.execute(delete(User).where(User.id == user_id))
            db.session.commit()
            return
        except OperationalError as e:
            if getattr(e.orig, "sqlstate", None) != DEADLOCK_DETECTED or attempt == DELETE_ATTEMPTS:
                raise
            db.session.rollback()


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def visible_or_404(user: User | None) -> User:
    """The caller may see only themself, an admin anyone; anything else looks like absence."""
    if user is None or not (current_user.is_admin or user.id == current_user.id):
        abort(404, message="User not found")
    return user


def update_user(
    user: User,
    *,
    name: str | None = None,
    password: str | None = None,
    current_password: str | None = None,
) -> None:
    """Apply a UserUpdate; changing one's own password takes the current one (an admin's too),
    unless the caller logged in with it moments ago (a fresh token) and sends none."""
    if password is not None:
        # A fresh token's login was the recent re-authentication (OWASP ASVS): the original web
        # client sends no current_password. One given is checked all the same.
        check = user.id == current_user.id and (current_password or not fresh_login())
        if check:
            if not current_password:
                _reject_current_password("Your current password is required to set a new one.")
            password_attempt(user.email)  # the same count as logins to this account
        # Ends the lookups' transaction: no database connection is held while hashing.
        db.session.commit()
        if check and not user.verify_password(current_password):
            _reject_current_password("Current password is incorrect.")
        user.change_password(password)
    if name is not None:
        user.name = name
    db.session.commit()


def _reject_current_password(reason: str) -> None:
    abort(422, message=reason, errors={"json": {"current_password": [reason]}})
