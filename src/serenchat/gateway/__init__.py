"""Client protocols; each module only translates frames into service calls."""
