#!/usr/bin/env bash
# Regenerate the Python gRPC modules from serve/proto/backscore/v1/backscore.proto.
#
# The proto is compiled with the repository root as the include path, so the generated
# modules import each other as serve.proto.backscore.v1.* (the package `serve` is ours, not
# ray.serve). Needs grpcio-tools (pip install -e '.[serve]'); its bundled protoc must not be
# newer than the installed protobuf runtime (the generated code checks this at import).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PROTO=serve/proto/backscore/v1/backscore.proto
"$PY" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. "$PROTO"
"$PY" -c "import serve.proto.backscore.v1.backscore_pb2_grpc as m; print('generated', m.__name__)"
