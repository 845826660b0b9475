"""Framework-free product logic: plain functions over plain data, tested without a server."""
