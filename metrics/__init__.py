"""Momento metrics: the lake, its schema, and the pure statistics engine behind the cockpit."""
