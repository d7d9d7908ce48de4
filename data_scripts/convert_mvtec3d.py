#!/usr/bin/env python
"""Convert mvtec3d from its native layout to the MVTec AD layout: `--src NATIVE --dst OUT`.

Idempotent and atomic per category (see stlm_core.data.convert). `--help` lists the options.
"""

import sys

from stlm_core.cli.download import convert_main

if __name__ == "__main__":
    sys.exit(convert_main("mvtec3d"))
