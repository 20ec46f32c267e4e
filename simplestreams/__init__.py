"""The simplestreams image index and server; arrives with its issue."""
