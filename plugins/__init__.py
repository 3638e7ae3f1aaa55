"""The plugin contract (hookspecs), the plugin manager, and built-in non-adapter plugins."""
