"""shipyard.packaging layer."""
