"""Control: approving plans and sending commands to devices (docs/commands.md)."""
