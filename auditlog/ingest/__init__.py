"""Writing events: the services the API calls, group commit, the storage layer, demo data."""
