"""Chat sessions and messages: send a message to a model, read and manage history."""
