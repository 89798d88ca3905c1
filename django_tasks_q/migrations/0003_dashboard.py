# The dashboard's entry in the admin index: a proxy model, so no table.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('django_tasks_q', '0002_admin_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='Dashboard',
            fields=[
            ],
            options={
                'verbose_name': 'dashboard',
                'verbose_name_plural': 'dashboard',
                'proxy': True,
                'default_permissions': (),
                'indexes': [],
                'constraints': [],
            },
            bases=('django_tasks_q.task',),
        ),
    ]
