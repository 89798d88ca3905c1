import subprocess
import sys

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

# The admin's login, made on the demo's first run: for a site on this machine only.
ADMIN_USER = ADMIN_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Run the demo: migrate, make an admin login, start a task worker, and serve the site."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        call_command("migrate", interactive=False, verbosity=0)
        host, _, port = addrport.rpartition(":")
        site = f"http://{host or '127.0.0.1'}:{port}/"
        self.stdout.write(f"The demo site: {site}")
        self.stdout.write(f"The admin: {site}admin/ ({self._login()})")
        self.stdout.write("Starting a worker (runtaskworker) beside the site...")
        worker = subprocess.Popen(
            [sys.executable, sys.argv[0], "runtaskworker", "--concurrency", "4"]
        )
        try:
            call_command("runserver", addrport, use_reloader=False)
        except KeyboardInterrupt:  # CONTROL-C: the worker stops too
            pass
        finally:
            self.stdout.write("Stopping the worker...")
            worker.terminate()
            try:
                worker.wait(timeout=40)
            except KeyboardInterrupt:  # CONTROL-C again: now
                worker.kill()

    def _login(self) -> str:
        """Make the admin's user on the first run; how to log in."""
        users = get_user_model()._default_manager
        user = users.filter(username=ADMIN_USER).first()
        if user is None:
            users.create_superuser(ADMIN_USER, password=ADMIN_PASSWORD)
        elif not user.check_password(ADMIN_PASSWORD):
            return f'user "{ADMIN_USER}", with the password you gave it'
        return f'user "{ADMIN_USER}", password "{ADMIN_PASSWORD}"'
