"""lgsp core: the exchange use cases and the infrastructure they need (imports no adapter)."""
