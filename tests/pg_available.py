"""Exit 0 if the PostgreSQL server of a postgres:// URL answers, else print why and exit 1.

Used by `make test` to decide whether to run the PostgreSQL half of the suite.
"""

import sys

import environ
import psycopg


def server_connect(url: str, **options) -> psycopg.Connection:
    """A connection to the server of a postgres:// URL, as its user, to the database postgres."""
    config = environ.Env.db_url_config(url)
    return psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
        connect_timeout=3,
        **options,
    )


def main(url: str) -> int:
    config = environ.Env.db_url_config(url)
    try:
        server_connect(url).close()
    except psycopg.Error as exc:
        print(
            f"PostgreSQL at {config['HOST']}:{config['PORT']} is unreachable: {exc}".strip(), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
