// urql (@urql/core 6): queries and mutations over HTTP with automatic persisted queries
// (GET for hashed queries), subscriptions over graphql-ws, and a new token after a 4403 close.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { createClient } from "graphql-ws";

/** The same options as apollo.js's createParleyClient. */
export function createParleyClient({ httpUrl, wsUrl, token, refreshToken, webSocketImpl }) {
  let refreshing = null; // the new token being fetched after a 4403 close
  const ws = createClient({
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
  });

  return new Client({
    url: httpUrl,
    fetchOptions: () => ({ headers: { authorization: `Bearer ${token()}` } }),
    exchanges: [
      cacheExchange,
      persistedExchange({ preferGetForPersistedQueries: true }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
}
