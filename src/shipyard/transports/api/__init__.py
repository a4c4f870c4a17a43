"""The management REST API of the control plane (`shipyard server`), under /api/v1."""
