"""Questions asked of a snapshot: nearest facilities, coverage, what-if, siting, bulk input."""
