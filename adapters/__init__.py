"""Protocol adapters: one package per protocol, each a pluggy plugin built on core's public API."""
