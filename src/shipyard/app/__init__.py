"""shipyard.app layer."""
