"""compute_to_data: containerized GPU computation where the data already lives, for iRODS.

Importing the package is cheap and safe inside the iRODS server: it pulls in only the standard
library and light packages. torch, papermill and nbconvert are imported only by the notebook
execution code, which runs in the container image (or on a development host).
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
