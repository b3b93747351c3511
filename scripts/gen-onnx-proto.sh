#!/bin/sh
# gen-onnx-proto.sh: regenerates src/model/onnx/onnx.pb-c.{c,h} from src/model/onnx/onnx.proto
# with protoc-c (Debian package protobuf-c-compiler, protobuf-c 1.4). The generated files are
# committed, so building imgsim needs only libprotobuf-c, not the compiler.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
dir="$here/src/model/onnx"
command -v protoc-c >/dev/null 2>&1 || {
    echo "gen-onnx-proto.sh: protoc-c not found (apt-get install protobuf-c-compiler)" >&2
    exit 1
}
cd "$dir"
protoc-c --proto_path=. --c_out=. onnx.proto
echo "gen-onnx-proto.sh: wrote $dir/onnx.pb-c.c and onnx.pb-c.h ($(protoc-c --version | head -1))"
