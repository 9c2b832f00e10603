"""The partition state machine's command families, one module each (as Restate's `entries/`): each handler
takes the `Apply` of the current call and records its command's effect through it."""
