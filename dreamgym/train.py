"""Old import path of the training job, kept so `from dreamgym.train import ...` still works.

Everything lives in `dreamgym.training` now (one module per job: config, episodes, vae, mdn,
metrics, workspace, epochs, report, card, pipeline); this module re-exports its public names.
"""

from dreamgym.training import *  # noqa: F403
from dreamgym.training import __all__  # noqa: F401
