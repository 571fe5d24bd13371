"""The scheduler lease as a fencing token, and commands as an outbox: a lease's token
counts takeovers; a command keeps its place among those decided with it and who is
delivering it (a claim that expires, so another sender delivers it after a crash).

Revision ID: 0003
Revises: 0006
Create Date: 2026-12-04 11:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_leases") as batch:
        batch.add_column(sa.Column("token", sa.Integer(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
        batch.drop_column("position")
    with op.batch_alter_table("scheduler_leases") as batch:
        batch.drop_column("token")
