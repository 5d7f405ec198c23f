"""The ``lineage`` command: a thin typer layer over :mod:`runtime.service`."""
