"""Revisions of the gateway store schema, oldest first."""
