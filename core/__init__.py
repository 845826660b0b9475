"""Infrastructure shared by every area: settings, database, Redis, the real-time hub, auth."""
