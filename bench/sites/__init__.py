"""Small Django sites the Django-based systems run in."""
