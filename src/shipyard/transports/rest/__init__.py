"""The REST data plane: a bare ASGI app speaking OIP v2, KServe v1 and MLflow scoring."""
