"""Use a space: embedded collections on disk, vector indexes over them, any-to-any search."""
