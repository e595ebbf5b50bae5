"""Training and evaluation of Bedside's risk models (PyTorch; never imported by ``streams``)."""
