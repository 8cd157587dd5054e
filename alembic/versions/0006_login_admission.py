"""synthorg_login_admit(): a lab-wide login admission in one round trip (PostgreSQL only)

The admission takes an advisory lock, then counts and reserves. One SQL statement would read
with a snapshot taken before the lock was granted, and miss a reservation committed while it
waited; inside a VOLATILE PL/pgSQL function every query takes a fresh snapshot (READ COMMITTED),
so the count runs after the lock, and the whole admission is still one call from the server.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIT = """
CREATE OR REPLACE FUNCTION synthorg_login_admit(
    p_lock bigint, p_ip text, p_account text, p_at timestamptz, p_ip_since timestamptz,
    p_pair_since timestamptz, p_exempt boolean, p_limit integer, p_threshold integer
) RETURNS TABLE (
    ip_all bigint, ip_failed bigint, ip_oldest timestamptz,
    pair_all bigint, pair_failed bigint, pair_oldest timestamptz, reservation bigint
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_pair_since timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    -- The pair's window starts no earlier than the account's last unlock.
    SELECT GREATEST(p_pair_since, (SELECT u.lockout_cleared_at FROM users u
                                   WHERE u.username_key = p_account))
      INTO v_pair_since;
    SELECT
      count(*) FILTER (WHERE a.at > p_ip_since),
      count(*) FILTER (WHERE a.at > p_ip_since AND a.outcome <> 'checking'),
      min(a.at) FILTER (WHERE a.at > p_ip_since AND a.outcome <> 'checking'),
      count(*) FILTER (WHERE a.account = p_account AND a.at > v_pair_since
                       AND a.outcome IN ('checking', 'failed')),
      count(*) FILTER (WHERE a.account = p_account AND a.at > v_pair_since
                       AND a.outcome = 'failed'),
      min(a.at) FILTER (WHERE a.account = p_account AND a.at > v_pair_since
                        AND a.outcome = 'failed')
      INTO ip_all, ip_failed, ip_oldest, pair_all, pair_failed, pair_oldest
      FROM login_attempts a
     WHERE a.ip = p_ip AND (a.at > p_ip_since OR a.account = p_account AND a.at > v_pair_since);
    reservation := NULL;
    IF (p_exempt OR ip_all < p_limit) AND pair_all < p_threshold THEN
        INSERT INTO login_attempts (ip, account, at, outcome)
        VALUES (p_ip, p_account, p_at, 'checking')
        RETURNING id INTO reservation;
    END IF;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS synthorg_login_admit("
            "bigint, text, text, timestamptz, timestamptz, timestamptz, boolean, integer, integer)"
        )
