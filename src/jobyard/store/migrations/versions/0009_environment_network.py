"""an environment's network policy

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

``environments.network``: "full" (the host's network) or "none" (a loopback interface
only). Existing environments get "full", what their jobs had until now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "environments",
        sa.Column("network", sa.String(16), nullable=False, server_default="full"),
    )


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("network")
