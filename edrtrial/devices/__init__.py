"""Actions on a company's devices (isolate, release, offboard) and verdicts written back."""
