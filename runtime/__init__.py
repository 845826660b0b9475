"""The GraphQL runtime: how a GraphQL request or subscription is run, between the
Starlette app (asgi.py) and the schema's types and resolvers.

    http.py          the /graphql view: context, limits, responses; the plain HTTP path
    websocket.py     the graphql-transport-ws handler: shared frames, one Outlet a socket
    prepared.py      ParleySchema: the executor, guards and patches wired in; prepared documents
    execution.py     the executor: graphql-core's, with a short path for plain data (`@plain`)
    fanout.py        one execution and one frame per subscription event and audience (`shared`, `direct`)
    guards.py        per-type permission guards on graphql-core's `is_type_of` (`@guard`)
    socket_guard.py  closes WebSockets whose credentials were revoked or expired
    patches.py       work-arounds applied to Strawberry when the schema is built

It relies on internals of strawberry-graphql and graphql-core, which is why both are
pinned exactly (pyproject.toml); each module's docstring names the ones it uses. `make
check-upgrade` runs the executor comparison suite against their newest releases.

Imports run one way: asgi.py imports runtime/; runtime/ imports core/ (and http.py
resolvers/auth.py's `authenticate`, as the context needs it); schema/ types use only
`plain`, `guard`, `shared`, `shared_async` and `direct`, and schema/__init__.py builds a
`ParleySchema`; resolvers/, domain/ and models/ never import runtime/. Nothing is imported
here, so a schema module importing `runtime.execution` does not load the HTTP view.
"""
