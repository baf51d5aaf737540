"""``python -m wdm_inpaint.container``: the container image's entry point."""

from __future__ import annotations

import sys

from wdm_inpaint.container.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
