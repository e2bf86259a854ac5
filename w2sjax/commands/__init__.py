"""Subcommands of the ``w2sjax`` command line, one module each."""
