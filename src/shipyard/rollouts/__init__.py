"""shipyard.rollouts layer."""
