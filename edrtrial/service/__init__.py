"""Running the service: the runtime every job shares, the jobs, and the scheduler."""
