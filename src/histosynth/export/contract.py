"""Tensor names of the exported generator graph, which every Triton variant serves as is. Import-light on purpose:
serving clients import it without torch."""

INPUT_Z = "z"  # float32 (B, latent_dim)
INPUT_CLASS = "class_id"  # int64 (B,) in the ONNX; (B, 1) over Triton (reshaped); only for conditional generators
OUTPUT_FLOAT = "images"  # float32 (B, C, H, W) in [-1, 1]
OUTPUT_UINT8 = "images_uint8"  # uint8 (B, H, W, C): round((x + 1) * 127.5) clamped to [0, 255]
