"""Create the two roles the PostgreSQL half of the suite runs with, as production does, and
print their URLs: the maintenance (owner) role's, then the runtime role's.

    python tests/pg_roles.py postgres://postgres@127.0.0.1:5432/auditlog

Needs a role that can create roles (the URL's). The owner logs in, creates the test database
and migrates it; the service's code runs as the runtime role, which has only the privileges
`auditlog_roles` grants. The owner is also made a member of the runtime role, so the suite can
run its in-process tests as the runtime role on the owner's connection (SET ROLE, tests/conftest.py);
nothing makes the runtime role a member of the owner.
"""

import sys
from urllib.parse import urlsplit, urlunsplit

import environ
from pg_available import server_connect  # beside this script, which runs as one
from psycopg import sql

OWNER = "auditlog_test_owner"
RUNTIME = "auditlog_test_runtime"
# Roles for tests only, on a test server: a fixed password, so the URLs work with password
# authentication as well as with trust.
PASSWORD = "auditlog-test"


def main(url: str) -> int:
    config = environ.Env.db_url_config(url)
    test_database = f"test_{config['NAME']}"
    with server_connect(url, autocommit=True) as admin:
        for role, attributes in ((OWNER, "LOGIN CREATEDB"), (RUNTIME, "LOGIN")):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
                admin.execute(sql.SQL(f"CREATE ROLE {{}} {attributes}").format(sql.Identifier(role)))
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD))
            )
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(RUNTIME), sql.Identifier(OWNER)))
        # A test database left by an earlier run as another role: the owner must be able to drop it.
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [test_database]).fetchone():
            admin.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(test_database), sql.Identifier(OWNER)
                )
            )
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    for role in (OWNER, RUNTIME):
        print(urlunsplit(parts._replace(netloc=f"{role}:{PASSWORD}@{host}")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
