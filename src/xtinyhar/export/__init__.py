"""Export to edge formats and the device runtime.

``to_onnx`` (needs torch) writes ONNX files with parity checks and int8 quantisation;
``runtime`` needs only numpy and onnxruntime, so a Raspberry Pi script can use it without
torch. This package imports nothing itself, so importing ``runtime`` stays torch-free.
"""
