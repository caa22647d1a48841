"""Memory: what Mnemo knows about each person, how it learns and recalls it."""
