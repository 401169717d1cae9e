"""`make bench`: throughput, API calls, memory and playbook speed against the sandbox.

Run as a script (`.venv/bin/python bench/run.py`), never imported by the service; its
modules import each other by their bare names from this folder.
"""
