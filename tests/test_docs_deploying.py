"""The deploy how-to's unit, Compose file and Kubernetes manifests run real
commands with real flags, and give the worker longer than its shutdown
timeout before they kill it."""

import re
import shlex
from pathlib import Path

import yaml
from django.core.management import load_command_class

from .test_docs import blocks

PAGE = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "deploying.md"
COMMAND = re.compile(r"manage\.py (runtaskworker|taskq)\b(.*)")


def parse(command: str, arguments: str):
    """The options the command's own parser makes of ``arguments``, up to the
    first shell operator."""
    words = shlex.split(re.split(r";|\|\||&&|\|", arguments)[0])
    parser = load_command_class("django_tasks_q", command).create_parser("manage.py", command)
    return parser.parse_args(words)


def strings(node):
    """Every string of a YAML document; a list of strings also as one line."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        if node and all(isinstance(item, str) for item in node):
            yield " ".join(node)
        for item in node:
            yield from strings(item)


def documents() -> list:
    return [
        document
        for block in blocks(PAGE)
        if block.language == "yaml"
        for document in yaml.safe_load_all(block.code)
        if document
    ]


def shutdown_timeout(text: str) -> float:
    match = COMMAND.search(text)
    assert match and match[1] == "runtaskworker", text
    return parse("runtaskworker", match[2]).shutdown_timeout


def test_every_command_in_the_manifests_parses():
    found = [match for d in documents() for s in strings(d) if (match := COMMAND.search(s))]
    assert {match[1] for match in found} == {"runtaskworker", "taskq"}
    for match in found:
        parse(match[1], match[2])


def test_kubernetes_waits_longer_than_the_shutdown_timeout():
    [deployment] = [d for d in documents() if d.get("kind") == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    timeout = shutdown_timeout(" ".join(worker["command"]))
    assert pod["terminationGracePeriodSeconds"] > timeout


def test_compose_waits_longer_than_the_shutdown_timeout():
    [compose] = [d for d in documents() if "services" in d]
    worker = compose["services"]["worker"]
    timeout = shutdown_timeout(" ".join(worker["command"]))
    assert int(worker["stop_grace_period"].removesuffix("s")) > timeout


def test_systemd_waits_longer_than_the_shutdown_timeout():
    [unit] = [block.code for block in blocks(PAGE) if block.language == "ini"]
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["KillSignal"] == "SIGTERM"
    assert float(settings["TimeoutStopSec"]) > shutdown_timeout(settings["ExecStart"])
