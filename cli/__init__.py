"""The `lgsp` command line: running the hub, administration, and the exchange client."""
