"""Hostile inputs: every class of bad input gets a 4xx with a stable code and the hub stays responsive."""
