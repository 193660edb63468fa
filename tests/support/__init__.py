"""Helpers shared by tests of several folders (never test modules themselves)."""
