"""Authentication: register, log in (OAuth2 password form), tokens."""
