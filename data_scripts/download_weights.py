#!/usr/bin/env python
"""Download and verify official checkpoints; same as `stlm weights download NAME [--dir DIR]`.

`python data_scripts/download_weights.py --list` shows the registry; `... all` downloads every checkpoint.
"""

import sys

from stlm_core.cli.download import weights_download_main

if __name__ == "__main__":
    sys.exit(weights_download_main())
