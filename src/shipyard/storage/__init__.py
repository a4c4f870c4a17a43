"""shipyard.storage layer."""
