"""The `edrtrial` command, thin over the same services the scheduler runs."""
