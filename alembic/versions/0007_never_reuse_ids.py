"""ids are never reused: SQLite's users, api_tokens, audit_log, bus_events and login_attempts
get AUTOINCREMENT (PostgreSQL's sequences never hand a number out twice: nothing to do there)

Without AUTOINCREMENT SQLite gives a new row the largest id in the table plus one, so deleting
the newest user and creating another gave the new account the deleted one's id, and with it
every cache entry, retained `user:<id>` event and audit row still keyed by that number.

SQLite cannot add AUTOINCREMENT to a table: each one is rebuilt (create a copy, copy the rows,
drop, rename) and keeps every row, constraint and index. Dropping `users` runs its ON DELETE
actions when foreign keys are on (they are, and a transaction cannot turn them off), which
would empty `sessions`, `api_tokens`, `ws_tickets` and unlink `first_admin`: their rows are
set aside in temporary tables first and put back once `users` is rebuilt.

The counters then start above every id the database still remembers, deleted rows included:
users above the largest `actor_id` in the audit log, tokens above the largest `token:<id>` an
audit entry names, so an account or token deleted before this upgrade is not reused either.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table with a generated integer id; `users` first, so its children are rebuilt after it.
REBUILT = ("users", "api_tokens", "audit_log", "bus_events", "login_attempts")
# Tables whose rows `DROP TABLE users` would delete (CASCADE) or change (SET NULL).
CHILDREN_OF_USERS = ("api_tokens", "sessions", "ws_tickets", "first_admin")
# The largest id each counter must stay above, beyond the rows still in the table.
REMEMBERED = {
    "users": "SELECT max(actor_id) FROM audit_log",
    "api_tokens": (
        "SELECT max(CAST(substr(target, 7) AS INTEGER)) FROM audit_log "
        "WHERE action LIKE 'token.%' AND target LIKE 'token:%'"
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # Every table name below is one of this module's constants, never input.
    for child in CHILDREN_OF_USERS:
        op.execute(f"CREATE TEMPORARY TABLE kept_{child} AS SELECT * FROM {child}")  # noqa: S608
    for name in REBUILT:
        with op.batch_alter_table(name, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass  # nothing changes but the table's options, which a rebuild applies
        if name == "users":
            # Whatever the drop did to the children (foreign keys on or off), put them back as
            # they were: the users they point to are in the new table under the same ids.
            for child in CHILDREN_OF_USERS:
                op.execute(f"DELETE FROM {child}")  # noqa: S608
                op.execute(f"INSERT INTO {child} SELECT * FROM kept_{child}")  # noqa: S608
                op.execute(f"DROP TABLE kept_{child}")
    for name, query in REMEMBERED.items():
        _keep_counter_above(name, query)


def _keep_counter_above(table: str, query: str) -> None:
    """sqlite_sequence holds each AUTOINCREMENT table's largest id handed out so far."""
    op.execute(
        f"INSERT INTO sqlite_sequence (name, seq) SELECT '{table}', 0 "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '{table}')"
    )
    op.execute(
        f"UPDATE sqlite_sequence SET seq = max(seq, coalesce(({query}), 0), "  # noqa: S608
        f"coalesce((SELECT max(id) FROM {table}), 0)) WHERE name = '{table}'"
    )


def downgrade() -> None:
    """Nothing to undo: revision 0006 works the same with AUTOINCREMENT tables, and taking it
    away would let ids be reused again."""
