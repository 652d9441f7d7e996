"""Generated protobuf and gRPC code for the nox.v1 API (do not edit; see protos/)."""
