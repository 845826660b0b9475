// Apollo Client 4: queries and mutations over HTTP with automatic persisted queries (GET
// for hashed queries), subscriptions over graphql-ws, and a new token after a 4403 close.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { sha256 } from "crypto-hash";
import { OperationTypeNode } from "graphql";
import { createClient } from "graphql-ws";

/**
 * httpUrl: "https://parley.example.com/graphql"; wsUrl: "wss://parley.example.com/graphql".
 * token(): the current token, wherever your app keeps it. refreshToken(): gets a new one
 * (`login` again; a widget's new `startContactSession`). webSocketImpl: browsers have
 * WebSocket; Node 20 takes the `ws` package's.
 */
export function createParleyClient({ httpUrl, wsUrl, token, refreshToken, webSocketImpl }) {
  const auth = new ApolloLink((operation, forward) => {
    operation.setContext(({ headers = {} }) => ({
      headers: { ...headers, authorization: `Bearer ${token()}` },
    }));
    return forward(operation);
  });

  const http = ApolloLink.from([
    new PersistedQueryLink({ sha256, useGETForHashedQueries: true }),
    auth,
    new HttpLink({ uri: httpUrl }),
  ]);

  let refreshing = null; // the new token being fetched after a 4403 close
  const ws = new GraphQLWsLink(
    createClient({
      url: wsUrl,
      webSocketImpl,
      // Called at every (re)connection: after a refresh, the new token goes.
      connectionParams: async () => {
        await refreshing;
        return { authorization: `Bearer ${token()}` };
      },
      on: {
        closed: (event) => {
          // 4403: credentials refused, revoked or expired. graphql-ws reconnects by itself
          // and subscribes again; connectionParams waits for the new token.
          if (event.code === 4403) refreshing = refreshToken().catch(() => {});
        },
      },
    }),
  );

  return new ApolloClient({
    link: ApolloLink.split(({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION, ws, http),
    cache: new InMemoryCache(),
  });
}
