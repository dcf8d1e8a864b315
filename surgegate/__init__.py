"""The surgegate command line: runs the edge, API, worker, migrations, seeding, and `up`."""
