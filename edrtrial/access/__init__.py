"""Who may use the console, with which roles, over which cohorts.

`roles` says what each role may do (one table), `accounts` keeps the people (local
accounts with argon2 hashes, Entra accounts) and their sign-ins, and `scope` turns the
cohorts a person is limited to into the filter every query of theirs takes.
"""
