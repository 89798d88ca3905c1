"""One driver per system, each run as a subprocess in that system's environment.

A driver is called as ``python -m bench.drivers.NAME setup`` (create its tables)
or ``python -m bench.drivers.NAME WORKLOAD N [--poll-interval S]`` and prints
one JSON object with its figures. Drivers import only the standard library,
their own system, and ``common``.
"""
