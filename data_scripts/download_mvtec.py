#!/usr/bin/env python
"""Download, verify (sha256) and unpack the mvtec dataset; same as `stlm data download mvtec --root DIR`.

Run `python data_scripts/download_mvtec.py --help` for the options.
"""

import sys

from stlm_core.cli.download import dataset_download_main

if __name__ == "__main__":
    sys.exit(dataset_download_main("mvtec"))
