// Runs docs/clients.md's examples (apollo.js, urql.js) against a live Parley, for
// tests/clients/test_js_clients.py; one JSON object a line on stdout.
//
//   node run.js <apollo|urql> query       # PARLEY_QUERY twice, over HTTP; the requests it took
//   node run.js <apollo|urql> subscribe   # PARLEY_SUBSCRIPTION until its first event
//
// Settings in the environment: PARLEY_HTTP_URL, PARLEY_WS_URL, PARLEY_TOKEN, PARLEY_VARIABLES
// (JSON), and PARLEY_LOGIN (JSON: LoginInput) for refreshToken.
import { gql } from "@apollo/client";
import WebSocket from "ws";

import * as apollo from "./apollo.js";
import * as urql from "./urql.js";

const [library, scenario] = process.argv.slice(2);
const env = process.env;
const emit = (line) => console.log(JSON.stringify(line));
const variables = JSON.parse(env.PARLEY_VARIABLES || "{}");

// Every HTTP request the client sends, as the server answered it.
const requests = [];
const fetchForReal = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  const sent = init.body
    ? JSON.parse(init.body)
    : Object.fromEntries(
        [...url.searchParams].map(([k, v]) => [k, ["extensions", "variables"].includes(k) ? JSON.parse(v) : v]),
      );
  const response = await fetchForReal(input, init);
  requests.push({
    method: (init.method || "GET").toUpperCase(),
    query: typeof sent.query === "string",
    sha256Hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
    status: response.status,
    cacheControl: response.headers.get("cache-control"),
    body: await response.clone().json(),
  });
  return response;
};

let token = env.PARLEY_TOKEN;
async function refreshToken() {
  emit({ step: "refreshToken" });
  const response = await fetchForReal(env.PARLEY_HTTP_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      query: "mutation Login($input: LoginInput!) { login(input: $input) { token } }",
      variables: { input: JSON.parse(env.PARLEY_LOGIN) },
    }),
  });
  token = (await response.json()).data.login.token;
  emit({ step: "refreshed" });
}

const client = { apollo, urql }[library].createParleyClient({
  httpUrl: env.PARLEY_HTTP_URL,
  wsUrl: env.PARLEY_WS_URL,
  token: () => token,
  refreshToken,
  webSocketImpl: WebSocket,
});

// The same two operations through either client.
async function query(document) {
  if (library === "apollo") {
    return (await client.query({ query: gql(document), variables, fetchPolicy: "network-only" })).data;
  }
  const result = await client.query(document, variables, { requestPolicy: "network-only" }).toPromise();
  if (result.error) throw result.error;
  return result.data;
}

function subscribe(document, next, error) {
  if (library === "apollo") {
    client.subscribe({ query: gql(document), variables }).subscribe({ next: ({ data }) => next(data), error });
  } else {
    client.subscription(document, variables).subscribe((result) => (result.error ? error(result.error) : next(result.data)));
  }
}

try {
  if (scenario === "query") {
    const results = [await query(env.PARLEY_QUERY), await query(env.PARLEY_QUERY)];
    emit({ results, requests });
    process.exit(0);
  } else if (scenario === "subscribe") {
    emit({ step: "subscribing" });
    subscribe(
      env.PARLEY_SUBSCRIPTION,
      (data) => {
        emit({ event: data });
        process.exit(0);
      },
      (failure) => {
        emit({ error: String(failure?.message ?? failure?.reason ?? failure) });
        process.exit(1);
      },
    );
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
} catch (failure) {
  emit({ error: String(failure?.message ?? failure) });
  process.exit(1);
}
