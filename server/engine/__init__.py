"""The delivery engine: what every transport shares (sessions, operations, planning, rendering,
bounded writers, resume). Transports (switchboard.ws, switchboard.streams) are adapters over it."""
