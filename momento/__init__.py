"""Momento: real-time personalisation you can measure honestly."""
