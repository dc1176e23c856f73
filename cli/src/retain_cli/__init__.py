"""The `retain` command: start the stack, run the demo, import data, make certificates."""
