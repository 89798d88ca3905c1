"""What a soak found, from the tasks' own records: standard library only.

Each worker process's file (see bench/sites/soak/tasks.py) has a line per
execution a task began (``E <n>``) and per result its worker recorded
(``R <n>``). With the store's final word on which tasks succeeded:

* lost: enqueued tasks that did not end SUCCESSFUL, or did without running;
* double-recorded: tasks whose result was recorded more than once;
* duplicate executions: executions beyond each task's first (at-least-once
  delivery allows them after a kill: they are counted, not failed).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tally:
    store: str
    enqueued: int
    lost: int
    double_recorded: int
    duplicate_executions: int
    kills: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.double_recorded == 0

    def line(self) -> str:
        return (
            f"{self.store}: enqueued {self.enqueued}, lost {self.lost}, "
            f"double-recorded {self.double_recorded}, "
            f"duplicate executions {self.duplicate_executions}, "
            f"kills {self.kills}, time {self.seconds:.1f} s"
        )


def read_records(directory: Path) -> tuple[Counter[int], Counter[int]]:
    """Executions and recordings per task, from every process's file."""
    executions: Counter[int] = Counter()
    recordings: Counter[int] = Counter()
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text().splitlines():
            kind, _, index = line.partition(" ")
            if not index.isdigit():  # a line cut short by a kill mid-write
                continue
            (executions if kind == "E" else recordings)[int(index)] += 1
    return executions, recordings


def tally(
    store: str,
    enqueued: Iterable[int],
    successful: set[int],
    executions: Counter[int],
    recordings: Counter[int],
    kills: int,
    seconds: float,
) -> Tally:
    enqueued = list(enqueued)
    lost = sum(1 for n in enqueued if n not in successful or executions[n] == 0)
    return Tally(
        store=store,
        enqueued=len(enqueued),
        lost=lost,
        double_recorded=sum(1 for count in recordings.values() if count > 1),
        duplicate_executions=sum(count - 1 for count in executions.values() if count > 1),
        kills=kills,
        seconds=seconds,
    )
