"""Chat: conversations, messages and streamed replies."""
