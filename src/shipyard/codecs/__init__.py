"""shipyard.codecs layer."""
