"""The `yuanrail` command: run central, bank nodes, the demo and the audit."""
