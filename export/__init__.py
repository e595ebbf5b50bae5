"""torch -> ONNX export of Bedside's risk models: manifest and parity check."""
