"""The comms service."""
