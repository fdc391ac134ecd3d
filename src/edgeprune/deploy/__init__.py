"""What runs on the device itself: self-contained files that need numpy and one runtime only.

``stream.py``: the streaming runner (``edgeprune stream``). Nothing here imports edgeprune, torch
or onnx, so a file can be copied to a board and run there.
"""
