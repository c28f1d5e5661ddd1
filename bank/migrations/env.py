from alembic import context

from rail_service.db import run_migrations_online

run_migrations_online(context)
