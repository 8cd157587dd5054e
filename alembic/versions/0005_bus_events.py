"""bus_events: the lab's ordered event log, which every process applies (NOTIFY wakes them)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bus_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bus_events")),
    )
    # The pruning of the cleanup job reads by age.
    op.create_index("ix_bus_events_created_at", "bus_events", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bus_events_created_at", table_name="bus_events")
    op.drop_table("bus_events")
