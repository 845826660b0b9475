// The GraphQL client both pages share: queries and mutations over HTTP (fetch), subscriptions
// over graphql-transport-ws (the vendored graphql-ws client), both with the caller's token.
//
//   const api = connect({ token: () => session.token, onStatus: (s) => show(s) });
//   const data = await api.request("query { viewer { kind } }");
//   const stop = api.subscribe("subscription { myMessages { cursor } }", {}, (data) => ...);
//
// The socket reconnects by itself after the network drops (every close is retried, waiting
// 0.5 s, 1 s, 2 s, then 3 s between attempts); `onReconnect` runs after each reconnection so
// the page can catch up by cursor on what it missed.
import { createClient } from "../vendor/graphql-ws/client.js";

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.code = errors[0]?.extensions?.code;
  }
}

// The first user error of a mutation payload, as "field: message", or null.
export function userError(payload) {
  const error = payload?.userErrors?.[0];
  if (!error) return null;
  return error.field?.length ? `${error.field.at(-1)}: ${error.message}` : error.message;
}

export function connect({ endpoint = "/graphql", token, onStatus = () => {}, onReconnect = () => {} }) {
  const bearer = () => (token() ? { authorization: `Bearer ${token()}` } : {});

  async function request(query, variables = {}) {
    const response = await fetch(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer() },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors?.length) throw new GraphQLError(body.errors);
    return body.data;
  }

  const url = new URL(endpoint, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const socket = createClient({
    url: url.href,
    connectionParams: bearer,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, [500, 1000, 2000][retries] ?? 3000)),
    on: {
      connecting: () => onStatus("connecting"),
      connected: (_socket, _payload, wasRetry) => {
        onStatus("connected");
        if (wasRetry) onReconnect();
      },
      closed: () => onStatus("offline"),
    },
  });

  function subscribe(query, variables, next) {
    return socket.subscribe(
      { query, variables },
      {
        next: (result) => (result.errors?.length ? console.warn(result.errors) : next(result.data)),
        error: (error) => console.warn("subscription ended", error),
        complete: () => {},
      },
    );
  }

  return { request, subscribe, close: () => socket.dispose() };
}

// Elements without innerHTML: text is always text.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false && value != null) element.setAttribute(name, value);
  }
  element.append(...children.flat().filter((child) => child != null && child !== false));
  return element;
}

export function time(iso) {
  return iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "";
}

// How often a page tells the server someone is typing: the server sends one notice a person and
// conversation every 3 s anyway, so calling more often only spends the caller's rate limit.
const TYPING_EVERY_MS = 3000;

// A function to call on every keystroke: it calls setTyping for `conversationId()` (when there is
// one) at most once every 3 s. A failed notice is only a missing indicator: it is not shown.
export function typingNotifier(api, conversationId) {
  let last = 0;
  return () => {
    const id = conversationId();
    if (!id || Date.now() - last < TYPING_EVERY_MS) return;
    last = Date.now();
    api
      .request(`mutation($input: SetTypingInput!) { setTyping(input: $input) { userErrors { message } } }`, {
        input: { conversationId: id },
      })
      .catch(() => {});
  };
}

// "… is typing…": shown from a TYPING notice until its expiresAt (a newer notice renews it),
// hidden at once by TYPING_STOPPED or a message from that person.
export class TypingIndicator {
  constructor(attributes) {
    this.element = h("p", { ...attributes, hidden: true });
    this.timer = null;
  }

  show(text, expiresAt) {
    clearTimeout(this.timer);
    this.element.textContent = text;
    this.element.hidden = false;
    // Bounded: a clock far off cannot keep the indicator up (notices last 6 s).
    const left = Math.min(Math.max(Date.parse(expiresAt) - Date.now(), 0), 10_000);
    this.timer = setTimeout(() => this.hide(), left);
  }

  hide() {
    clearTimeout(this.timer);
    this.element.hidden = true;
  }
}
