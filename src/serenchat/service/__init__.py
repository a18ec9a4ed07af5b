"""The use cases of the chat server; every access decision is made here."""

from serenchat.service.chat import ChatService, Joined, Limits, Session

__all__ = ["ChatService", "Joined", "Limits", "Session"]
