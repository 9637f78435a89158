"""The labelling web app of INV: people see cluster maps revealed step by step, guess the class and name what
they see; answers go to SQLite and export to CSV. Serve it with ``p2pvision label serve``."""
