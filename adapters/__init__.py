"""Protocol adapters: one package per protocol, each a pluggy plugin built on core's public API."""

if __name__ != "lgsp.adapters":
    raise ImportError(f"import lgsp.adapters, not {__name__}: a second name would load every module twice")
