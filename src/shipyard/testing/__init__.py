"""shipyard.testing layer."""
