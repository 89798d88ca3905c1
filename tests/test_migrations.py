import pytest
from django.core.management import call_command
from django.db import connections


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "django_tasks_q", "--check", "--dry-run", verbosity=0)


def test_the_queue_table_is_vacuumed_early_on_postgres(postgres_queue_db):
    with connections[postgres_queue_db.database].cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'django_tasks_q_task'")
        options = cursor.fetchone()[0]
    assert "autovacuum_vacuum_scale_factor=0.01" in options
    assert "autovacuum_vacuum_cost_delay=0" in options
