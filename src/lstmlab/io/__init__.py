"""Files: one model format for both engines (safetensors + metadata), ONNX, atomic writes."""
