"""data: the sample county the project ships, and the deterministic generator that made it."""
