"""shipyard.jobs layer."""
