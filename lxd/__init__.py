"""Everything that speaks to LXD; arrives with its issue."""
