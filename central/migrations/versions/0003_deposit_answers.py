"""Reserve deposits keep their first answer, so a repeat is answered with it.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # JSON of the answer the deposit was first given (NULL for deposits made before this).
    with op.batch_alter_table("reserve_deposits") as batch:
        batch.add_column(sa.Column("result", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reserve_deposits") as batch:
        batch.drop_column("result")
