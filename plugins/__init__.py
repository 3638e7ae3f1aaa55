"""The plugin contract (hookspecs), the plugin manager, and built-in non-adapter plugins."""

if __name__ != "lgsp.plugins":
    raise ImportError(f"import lgsp.plugins, not {__name__}: a second name would load every module twice")
