"""``python -m tsimpute`` (and ``torchrun -m tsimpute``): the command line of :mod:`tsimpute.cli`."""

from .cli import app

app(prog_name="tsimpute")
