import sys

from target_carecycle.sandbox.cli import main

sys.exit(main())
