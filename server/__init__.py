"""Switchboard: Channels-style groups of WebSocket sessions behind a typed GraphQL API."""

__version__ = "0.1.0"
