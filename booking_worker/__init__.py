"""The arq worker that commits booking attempts exactly once."""
