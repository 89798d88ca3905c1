"""Every code sample in the documentation (docs/ and README.md) is run here.

* ``python`` blocks run, in page order, in one namespace per page. That
  namespace is a real module (registered in ``sys.modules``), so a task a page
  defines resolves like one in an app's ``tasks.py``: the page can enqueue it
  and run it with ``run_tasks()``. The database is the test settings' (SQLite,
  migrated, data kept between the page's blocks). A ``TASKS`` setting a page
  defines is checked as ``manage.py check`` would check its OPTIONS.
* Code of other projects (the migration guides' "before" side: a block whose
  title starts with Celery, django-q2, Huey or django-tasks-db) cannot run
  here; it is compiled, so at least it is Python.
* ``yaml``, ``json`` and ``toml`` blocks, and such files under docs/, parse.
* ``console`` lines that run ``manage.py runtaskworker`` or ``manage.py
  taskq`` are parsed by the command's own argument parser, so a sample never
  shows a flag that does not exist.
"""

import json
import re
import shlex
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, load_command_class
from django.utils.module_loading import import_string

from django_tasks_q.checks import read_options

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda path: str(path.relative_to(ROOT)),
)
FOREIGN = re.compile(r'title="(Celery|django-q2|Huey|django-tasks-db)\b')
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    info: str
    code: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (also inside lists and admonitions)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening or not opening["info"].strip():
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index][indent:])
            index += 1
        language = info.split()[0].strip("{}.").lower()
        found.append(Block(page, index - len(body), language, info, "\n".join(body) + "\n"))
        index += 1
    return found


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


DATABASE_OPTIONS = ("database", "listen_database")


def check_tasks_setting(tasks: dict, databases: dict | None, where: Block) -> None:
    """Check TASKS' OPTIONS as ``manage.py check`` would. Options naming a
    database alias are checked against the page's own DATABASES when it
    defines one (these settings are not the test project's)."""
    for alias, params in tasks.items():
        backend = import_string(params["BACKEND"])
        if not hasattr(backend, "declared_options"):
            continue  # one of Django's own backends
        options = dict(params.get("OPTIONS", {}))
        if databases is not None:
            for name in DATABASE_OPTIONS:
                if options.get(name) is not None:
                    assert options.pop(name) in databases, f"{where}: {name} not in DATABASES"
        _, messages = read_options(alias, options, backend.declared_options)
        assert not messages, f"{where}: TASKS[{alias!r}]: {messages}"


def python_samples(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.language in ("python", "py")]


@pytest.mark.parametrize("page", [page for page in PAGES if python_samples(page)], ids=page_id)
@pytest.mark.django_db(transaction=True)
def test_python_samples_run(page: Path) -> None:
    samples = python_samples(page)
    name = "docs_sample_" + re.sub(r"\W", "_", page_id(page).removesuffix(".md"))
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        for block in samples:
            code = compile(block.code, str(block), "exec")
            if FOREIGN.search(block.info):
                continue  # another project's code: compiled only
            try:
                exec(code, module.__dict__)
            except Exception as error:
                raise AssertionError(f"the sample at {block} raised {error!r}") from error
            if isinstance(module.__dict__.get("TASKS"), dict):
                databases = module.__dict__.get("DATABASES")
                check_tasks_setting(module.__dict__.pop("TASKS"), databases, block)
    finally:
        del sys.modules[name]


def data_samples() -> list:
    return list(_data_samples())


def _data_samples():
    for page in PAGES:
        for block in blocks(page):
            if block.language in ("yaml", "yml", "json", "toml"):
                yield pytest.param(block.language, block.code, id=str(block))
    for path in sorted((ROOT / "docs").rglob("*")):
        language = path.suffix.lstrip(".")
        if language in ("yaml", "yml", "json", "toml"):
            yield pytest.param(language, path.read_text(), id=page_id(path))


@pytest.mark.parametrize(("language", "text"), data_samples())
def test_data_samples_parse(language: str, text: str) -> None:
    if language == "json":
        json.loads(text)
    elif language == "toml":
        tomllib.loads(text)
    else:
        list(yaml.safe_load_all(text))


def command_lines() -> list:
    return list(_command_lines())


def _command_lines():
    for page in PAGES:
        for block in blocks(page):
            if block.language not in ("console", "shell", "bash", "sh"):
                continue
            for line in block.code.splitlines():
                command = line.removeprefix("$ ")
                match = re.search(r"manage\.py (runtaskworker|taskq)\b(.*)", command)
                if match:
                    yield pytest.param(match[1], match[2], id=f"{block}: {command.strip()}")


@pytest.mark.parametrize(("command", "arguments"), command_lines())
def test_commands_shown_exist(command: str, arguments: str) -> None:
    # Up to the first shell operator; comments dropped.
    words = []
    for word in shlex.split(arguments, comments=True):
        if word in ("|", "||", "&&", ";", "&", ">", "2>&1"):
            break
        words.append(word)
    parser = load_command_class("django_tasks_q", command).create_parser("manage.py", command)
    try:
        parser.parse_args(words)
    except (CommandError, SystemExit) as error:
        pytest.fail(f"manage.py {command} {' '.join(words)}: rejected: {error}")
