"""The data plane: loaded models, adaptive batching, and the one inference path every
transport (REST, gRPC, batch, streaming) shares."""
