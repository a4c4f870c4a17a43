"""shipyard.transports layer."""
