"""Suite-wide settings."""
import os

import torch

# `make test` runs two pytest workers on two cores: one intra-op thread each, or their thread pools
# oversubscribe the cores. Tests that time or compare thread counts set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
