"""tenancy

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_key_id", sa.String(length=64), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_tenant_id_seq", ["tenant_id", "seq"], unique=False)

    op.create_table(
        "projects",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_projects_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_projects")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_projects_tenant_id_name")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.String(length=64), nullable=True))

    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=64), server_default="default", nullable=False)
        )

    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=64), server_default="default", nullable=False)
        )

    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=64), server_default="default", nullable=False)
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=64), server_default="default", nullable=False)
        )
        batch_op.add_column(sa.Column("packages", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("runtime_env", sa.JSON(), nullable=True))

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=64), server_default="default", nullable=False)
        )

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_running_jobs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_queued_jobs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("max_log_bytes", sa.BigInteger(), nullable=True))
    # every existing tenant gets its default project
    op.execute(
        sa.text(
            "INSERT INTO projects (tenant_id, id, name, active, created_at) "
            "SELECT id, 'default', 'Default project', active, created_at FROM tenants"
        )
    )


def downgrade() -> None:

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("max_log_bytes")
        batch_op.drop_column("max_storage_bytes")
        batch_op.drop_column("max_queued_jobs")
        batch_op.drop_column("max_running_jobs")

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("project_id")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("runtime_env")
        batch_op.drop_column("packages")
        batch_op.drop_column("project_id")

    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.drop_column("project_id")

    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.drop_column("project_id")

    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("project_id")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("project_id")

    op.drop_table("projects")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tenant_id_seq")

    op.drop_table("audit_log")
