"""An app whose import fails, as a user's app does when a setting is missing."""

raise RuntimeError("missing setting")
