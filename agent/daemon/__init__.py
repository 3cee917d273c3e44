"""The daemon: its event loop and services (core), the turn queue, confirmations and
questions, the process's lock, logs and start/stop (process), the login-service files
(install), the assembly of the parts from settings (assembly), what it finds wrong (health),
the network guard, and the start-up report.
"""
