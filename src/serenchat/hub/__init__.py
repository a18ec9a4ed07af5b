"""This node's connections, their rooms, and the fan-out to them."""

from serenchat.hub.hub import Codec, Hub, Subscriber, Subscription

__all__ = ["Codec", "Hub", "Subscriber", "Subscription"]
