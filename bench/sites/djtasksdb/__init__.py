"""The benchmark's site for django-tasks-db, Django's ORM reference backend."""
