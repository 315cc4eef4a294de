#!/usr/bin/env bash
# Build a TensorRT engine from the jetson artifact (QDQ INT8 ONNX from `edge-sdk export --target jetson`).
# Engines are specific to the GPU, JetPack and TensorRT version: build on the device that runs it.
#   build-engine model_jetson_int8.onnx [model.engine]
set -euo pipefail
onnx="${1:?usage: build-engine MODEL.onnx [OUT.engine]}"
engine="${2:-${onnx%.onnx}.engine}"
# QDQ nodes carry the INT8 scales (explicit quantization): --int8 enables those kernels, --fp16 the rest.
trtexec --onnx="$onnx" --int8 --fp16 --saveEngine="$engine" --skipInference
echo "engine: $engine"
