"""registry environments folders definitions results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("env_vars", sa.JSON(), nullable=False),
        sa.Column("pip_requirements", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("cpu_slots", sa.Integer(), server_default="1", nullable=False),
        sa.Column("memory_limit_mb", sa.Integer(), nullable=True),
        sa.Column("max_concurrent_jobs", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_environments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_environments_tenant_id_name")),
    )
    op.create_table(
        "folders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_folders_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folders")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_folders_tenant_id_name")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("expected_interval_minutes", sa.Integer(), nullable=True),
        sa.Column("retention_hours", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_models_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_models_tenant_id_name")),
    )
    op.create_table(
        "folder_files",
        sa.Column("folder_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id"],
            ["folders.id"],
            name=op.f("fk_folder_files_folder_id_folders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("folder_id", "path", name=op.f("pk_folder_files")),
    )
    op.create_table(
        "job_artifacts",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_artifacts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_job_artifacts")),
        sa.UniqueConstraint("job_id", "path", name=op.f("uq_job_artifacts_job_id_path")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("artifact_name", sa.String(length=255), nullable=True),
        sa.Column("artifact_size", sa.BigInteger(), nullable=True),
        sa.Column("artifact_is_archive", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("input_roles", sa.JSON(), nullable=False),
        sa.Column("output_roles", sa.JSON(), nullable=False),
        sa.Column("parameters_schema", sa.JSON(), nullable=True),
        sa.Column("default_parameters", sa.JSON(), nullable=False),
        sa.Column("default_environment_id", sa.String(length=36), nullable=True),
        sa.Column("deprecated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_model_versions_model_id_models")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_model_versions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_model_versions_model_id_version")),
    )
    op.create_table(
        "job_definitions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("model_version_id", sa.String(length=36), nullable=False),
        sa.Column("role_bindings", sa.JSON(), nullable=False),
        sa.Column("default_parameters", sa.JSON(), nullable=False),
        sa.Column("environment_id", sa.String(length=36), nullable=True),
        sa.Column("output_folder_id", sa.String(length=36), nullable=True),
        sa.Column("priority", sa.String(length=10), server_default="normal", nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_job_definitions_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_job_definitions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_definitions")),
    )
    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_definitions_active_next_run_at", ["active", "next_run_at"], unique=False
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_version_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("model_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("environment_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("input_folder_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("output_folder_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("input_bindings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("definition_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("continue_on_error", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("slots", sa.Integer(), server_default="1", nullable=False))
        batch_op.create_index(
            "ix_jobs_environment_id_state", ["environment_id", "state"], unique=False
        )
        batch_op.create_index("ix_jobs_model_version_id", ["model_version_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_model_version_id")
        batch_op.drop_index("ix_jobs_environment_id_state")
        batch_op.drop_column("slots")
        batch_op.drop_column("continue_on_error")
        batch_op.drop_column("definition_id")
        batch_op.drop_column("input_bindings")
        batch_op.drop_column("output_folder_id")
        batch_op.drop_column("input_folder_id")
        batch_op.drop_column("environment_id")
        batch_op.drop_column("model_sha256")
        batch_op.drop_column("model_version_id")

    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.drop_index("ix_job_definitions_active_next_run_at")

    op.drop_table("job_definitions")
    op.drop_table("model_versions")
    op.drop_table("job_artifacts")
    op.drop_table("folder_files")
    op.drop_table("models")
    op.drop_table("folders")
    op.drop_table("environments")
