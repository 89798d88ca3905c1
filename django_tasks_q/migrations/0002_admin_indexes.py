# The admin's filters (status, queue, task name) over the history table, each
# with finished_at second so a filtered list, newest first, reads one range.

from django.db import migrations, models


class AddIndexConcurrently(migrations.AddIndex):
    """AddIndex without blocking writes on PostgreSQL.

    The history table may hold millions of rows by the time this runs, and the
    workers insert into it all the time: a plain CREATE INDEX would stop them
    until it is built. Elsewhere (SQLite) it is a plain AddIndex.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class Migration(migrations.Migration):

    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('django_tasks_q', '0001_initial'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='taskresult',
            index=models.Index(fields=['status', 'finished_at'], name='taskq_result_status'),
        ),
        AddIndexConcurrently(
            model_name='taskresult',
            index=models.Index(fields=['queue_name', 'finished_at'], name='taskq_result_queue'),
        ),
        AddIndexConcurrently(
            model_name='taskresult',
            index=models.Index(fields=['task_path', 'finished_at'], name='taskq_result_task'),
        ),
    ]
