"""A regression's predictions and outcomes are logged: no probability, a number for prediction and outcome.

Revision ID: 0005
Revises: 0004

`predictions.probability` becomes nullable (a regression has none) and `predictions.prediction`
and `feedback.outcome` become Float, so a regression's predicted and observed values (e.g.
diabetes progression, 25-346) are stored whole. Integer to Float keeps every stored 0/1 decision
and outcome (as 0.0/1.0). Downgrading fails while a regression's row (a null probability) is
in the log: the old schema cannot hold it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("probability", existing_type=sa.Float(), nullable=True)
        batch.alter_column(
            "prediction", existing_type=sa.Integer(), type_=sa.Float(), existing_nullable=False
        )
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("outcome", existing_type=sa.Integer(), type_=sa.Float(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("outcome", existing_type=sa.Float(), type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column(
            "prediction", existing_type=sa.Float(), type_=sa.Integer(), existing_nullable=False
        )
        batch.alter_column("probability", existing_type=sa.Float(), nullable=False)
