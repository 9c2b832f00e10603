"""Contract services of the conformance suite, written once against the official SDK's API."""
