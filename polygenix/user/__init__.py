"""Users: the caller's own record, and admin access to everyone's."""
