"""Training of the embedded default models (PyTorch, CPU) and export into Magenta's variable layout.

Training-only: needs the ``train`` extra (torch, music21). The service never imports this package.
"""
