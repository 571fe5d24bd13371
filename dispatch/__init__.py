"""The control room: scheduler jobs, alarms and the operators' web view."""
