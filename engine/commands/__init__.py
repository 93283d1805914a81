"""The ``techx`` command line: one module per command, wiring the core and the adapters."""
