"""API keys: tokens, creating and revoking keys, finding a request's key."""
