#!/usr/bin/env python
"""Download, verify (sha256) and unpack the dagm dataset; same as `stlm data download dagm --root DIR`.

Run `python data_scripts/download_dagm.py --help` for the options.
"""

import sys

from stlm_core.cli.download import dataset_download_main

if __name__ == "__main__":
    sys.exit(dataset_download_main("dagm"))
