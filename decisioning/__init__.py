"""The decisioning service: next best action per placement, under governance, logged."""
