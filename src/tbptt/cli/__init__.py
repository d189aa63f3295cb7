"""The ``tbptt`` command line, on top of everything else.

What lives here: the entry point and its parser (``main``), the options built from the
config dataclasses (``options``), what a command shows (``output``: progress, records),
the run's config file (``runconfig``), the data a run reads (``rundata``), the
``train``, ``eval`` and ``generate`` subcommands (``commands``), ``tbptt demo``
(``demo``) and ``tbptt advise`` (``advise``).

What it may import: anything in the package. Within it, no subcommand imports the
entry point (``main``); the entry point imports the subcommands.
"""
