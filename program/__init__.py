"""What every long-running webspaces program shares, whatever it serves.

- :mod:`program.config` — one table-driven configuration loader (defaults < YAML file < environment
  < flags) and its :class:`~program.config.ConfigError` naming the key and where the value came from;
- :mod:`program.checks` — the value checkers the key tables use;
- :mod:`program.runner` — the program runner (configuration, logging, exit statuses) and the
  signal-driven lifecycle (``open``, ``run`` until SIGTERM/SIGINT, ``close``);
- :mod:`program.logs` — logging set-up;
- :mod:`program.http` — health, metrics and management apps embedded in a program's event loop.

A leaf package: it imports nothing of the project, and every package may import it.
"""
