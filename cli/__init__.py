"""The `lgsp` command line: running the hub, administration, and the exchange client."""

if __name__ != "lgsp.cli":
    raise ImportError(f"import lgsp.cli, not {__name__}: a second name would load every module twice")
