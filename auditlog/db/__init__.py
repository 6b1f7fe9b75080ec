"""Connections: the database backends, the per-request guard, timeouts, the SQLite writer
queue, and the files that hold the trail."""
