"""Helpers for kansoku's own tests: a loopback collector and child-process programs."""
