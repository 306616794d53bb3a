"""The ``authgate`` command-line interface; ``main.py`` is the entry point."""
