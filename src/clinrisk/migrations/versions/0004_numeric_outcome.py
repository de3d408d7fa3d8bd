"""A labelled example's outcome is a number: 0/1 for a classification, the measured value for a regression.

Revision ID: 0004
Revises: 0003

Integer to Float keeps every stored 0/1 (as 0.0/1.0), so a classification's snapshots, content
hashes and digests are unchanged; a regression's outcome (e.g. diabetes progression, 25-346)
is stored whole instead of being truncated. The prediction log's feedback stays 0/1.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("labelled_examples") as batch:
        batch.alter_column("outcome", existing_type=sa.Integer(), type_=sa.Float(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("labelled_examples") as batch:
        batch.alter_column("outcome", existing_type=sa.Float(), type_=sa.Integer(), existing_nullable=False)
