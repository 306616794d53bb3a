"""authgate's benchmark harness: servers, load, measurements and the report (see bench/README.md).

Not part of the authgate package; it may import authgate (for seeding the growth test).
"""
