"""The HTTP edge: views, routing and auth, body reading, the error shape, middleware, OpenAPI."""
