"""Who made each prediction and each feedback: the user or API key, never a secret.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("predictions", "feedback"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("requested_by", sa.String(64), nullable=True))


def downgrade() -> None:
    for table in ("predictions", "feedback"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("requested_by")
