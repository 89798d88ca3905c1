"""Vacuum the queue table early and often (PostgreSQL).

Every task is inserted into, updated in and deleted from ``Task``, so dead
row versions pile up at the head of the claim index. PostgreSQL's default is
to vacuum once 20 % of a table is dead: with a large backlog that is hundreds
of thousands of dead entries for each claim to step over. These settings
vacuum after ~1,000 dead rows plus 1 % of the table, without throttling.
"""

from django.db import migrations

TABLE = "django_tasks_q_task"
SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.01",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_vacuum_cost_delay": "0",
}


def tune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        pairs = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
        schema_editor.execute(f"ALTER TABLE {TABLE} SET ({pairs})")


def untune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(SETTINGS)})")


class Migration(migrations.Migration):
    dependencies = [("django_tasks_q", "0003_dashboard")]

    operations = [migrations.RunPython(tune, untune, elidable=False)]
