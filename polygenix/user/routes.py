from flask.views import MethodView
from sqlalchemy import func, select

from ..api import Blueprint, NoticeSchema, page_of
from ..auth.access import current_user
from ..extensions import db
from ..limits import per_ip_and_account
from ..models import MAX_ID, User
from .schemas import ShowUserSchema, UserSchema, UserUpdateSchema
from .service import create_user, delete_account, find_by_email, update_user, visible_or_404

blp = Blueprint(
    "user",
    __name__,
    url_prefix="/api/user",
    description="Users. Each user sees and changes only their own record; an admin, anyone's.",
)


@blp.route("/")
class Me(MethodView):
    @blp.login_required
    @blp.response(200, ShowUserSchema)
    def get(self):
        """The caller's own record"""
        return current_user


@blp.route("/create")
class CreateUser(MethodView):
    @per_ip_and_account
    @blp.arguments(UserSchema())
    @blp.response(200, ShowUserSchema)
    @blp.errors(409, 429)
    def post(self, data):
        """Create a user (no admin rights; use the CLI for those)"""
        return create_user(**data)


@blp.route("/all")
class AllUsers(MethodView):
    @blp.login_required(admin=True)
    @blp.response(200, ShowUserSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List every user (admins only), oldest first"""
        p = pagination_parameters
        p.item_count = db.session.scalar(select(func.count(User.id)))
        return db.session.scalars(
            page_of(select(User).order_by(User.id), p.page, p.page_size)
        ).all()


@blp.route(f"/<int(min=1, max={MAX_ID}):user_id>")
class UserById(MethodView):
    @blp.login_required
    @blp.errors(404)
    @blp.response(200, ShowUserSchema)
    def get(self, user_id):
        """One user by id (yourself, or anyone for an admin)"""
        return visible_or_404(db.session.get(User, user_id))

    @blp.login_required
    @blp.errors(404)
    @blp.response(200, NoticeSchema)
    def delete(self, user_id):
        """Delete a user with their sessions and messages (yourself, or anyone for an admin)"""
        user = visible_or_404(db.session.get(User, user_id))
        # Sessions and messages go with it through ON DELETE CASCADE; its tokens stop working
        # because their user no longer exists.
        delete_account(user.id)
        return {"message": "User deleted successfully"}


@blp.route("/email/<email>")
class UserByEmail(MethodView):
    @blp.login_required
    @blp.errors(404)
    @blp.response(200, ShowUserSchema)
    def get(self, email):
        """One user by email, case-insensitively (yourself, or anyone for an admin)"""
        return visible_or_404(find_by_email(email))


@blp.route(f"/update/<int(min=1, max={MAX_ID}):user_id>")
class UpdateUser(MethodView):
    @blp.login_required
    @blp.arguments(UserUpdateSchema(), required=False)
    @blp.errors(404)
    @blp.response(200, ShowUserSchema)
    def put(self, data, user_id):
        """Change a user's name or password; your own password needs `current_password`

        A new password revokes every token issued before it: log in again.
        """
        user = visible_or_404(db.session.get(User, user_id))
        update_user(user, **data)
        return user
