"""What scripts and tests share to start and talk to real processes: an embedded Redis, the servers, clients.

Development tooling only: no production process imports it.
"""
