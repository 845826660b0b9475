"""What each field does: permission check, validation, the domain call. One module per area.

Resolvers take the request `Context` and plain values and return models or plain data;
the schema layer turns those into GraphQL types.
"""
