"""`python -m target_carecycle`: the same command as the `target-carecycle` executable."""

from __future__ import annotations

from target_carecycle.target import main

main()
