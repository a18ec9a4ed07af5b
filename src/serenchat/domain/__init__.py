"""Plain types and the error vocabulary; nothing here does I/O."""
