"""lgsp core: the exchange use cases and the infrastructure they need (imports no adapter)."""

if __name__ != "lgsp.core":
    raise ImportError(f"import lgsp.core, not {__name__}: a second name would load every module twice")
