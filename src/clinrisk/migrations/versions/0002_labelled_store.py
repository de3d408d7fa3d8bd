"""The labelled store: batches of labelled examples per model, and the examples themselves.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labelled_batches",
        sa.Column("batch_id", sa.String(36), primary_key=True),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),  # seed | batch:<file name> | feedback
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", "content_digest", name="uq_labelled_batches_content"),
    )
    op.create_table(
        "labelled_examples",
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("labelled_batches.batch_id"), nullable=False),
        sa.Column("original_id", sa.String(64), nullable=True),
        sa.Column("features", sa.Text, nullable=False),  # JSON object of the validated features
        sa.Column("outcome", sa.Integer, nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_labelled_examples_model", "labelled_examples", ["model_name", "content_hash"])
    op.create_index("ix_labelled_examples_original", "labelled_examples", ["model_name", "original_id"])


def downgrade() -> None:
    op.drop_table("labelled_examples")
    op.drop_table("labelled_batches")
