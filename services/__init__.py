"""Services: the code that both sides of the house call, the API's resolvers and the arq
tasks in jobs/ (job records, webhook events, segment marks, export files, attribution,
conversation activity). A service takes plain arguments (an Outbox, a workspace id), never
a GraphQL context, and imports only domain/, models/, core/ and other services.
See docs/architecture.md."""
