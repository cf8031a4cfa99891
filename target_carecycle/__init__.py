"""target-carecycle: a Singer target that uploads leads to careCycle."""
