"""Personal API keys: a bearer credential for tools that cannot log in with a form."""
