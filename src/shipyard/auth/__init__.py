"""shipyard.auth layer."""
