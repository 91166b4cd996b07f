"""Generated gRPC modules (scripts/gen_proto.sh)."""
