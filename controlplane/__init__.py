"""The user-facing HTTP API (webspaced parity and beyond); arrives with its issue."""
