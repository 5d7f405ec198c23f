"""Wiring: settings, adapter selection and the application services the CLI and workers call."""
