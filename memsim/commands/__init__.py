"""Subcommands of the ``memsim`` CLI; each module has ``register(subparsers)`` setting ``func``."""
