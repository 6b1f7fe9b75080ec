"""Reading events: queries, filters, keyset pagination, the public JSON form, export."""
