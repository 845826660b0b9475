"""Operator tools run by cli.py (workspaces, agents and keys from the command line; the
demo seed). They sit at the top of the house with asgi.py and cli.py: they may import any
layer (the demo seed drives the app through its own GraphQL API), and nothing imports them
but cli.py. See docs/architecture.md."""
