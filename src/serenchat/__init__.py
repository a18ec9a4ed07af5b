"""SerenChat: a self-hosted real-time chat and presence server."""

__version__ = "0.1.0"
