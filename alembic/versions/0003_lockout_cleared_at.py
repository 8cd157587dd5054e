"""users.lockout_cleared_at: an admin's unlock, seen by every server process

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: adding it is a metadata change on both backends, and every
    # existing user simply has never been unlocked.
    op.add_column("users", sa.Column("lockout_cleared_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("lockout_cleared_at")
