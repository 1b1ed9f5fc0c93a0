#!/usr/bin/env bash
# Makes the Python agent runnable: a venv with grpcio, and stubs generated
# from the proto (into gen/, not kept in git).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
rm -rf "$here/gen" && mkdir -p "$here/gen"
"$here/.venv/bin/python" -m grpc_tools.protoc -I "$root/proto" -I "$root/third_party/proto" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" \
  connector/v1/agent.proto connector/v1/connector.proto
echo "ready: $here/.venv/bin/python $here/agent.py --help"
