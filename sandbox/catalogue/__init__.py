"""The provincial item library (事项库) simulation."""
