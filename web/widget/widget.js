// The Parley web widget, as a customer's site embeds it:
//
//   import { mount } from "/demo/assets/widget/widget.js";
//   mount({ channelKey: "wk_…" });              // the channel's public key
//
// It opens a contact session (kept in localStorage, so the visitor stays the same across
// pages and visits), reports each page view and the time spent on it, shows the proactive
// messages pushed to the visitor, and chats: history, sending, live replies (myMessages),
// an unread badge, a catch-up by cursor after the socket reconnects, and typing indicators both ways.
import { connect, h, time, typingNotifier, TypingIndicator, userError } from "../lib/api.js";

const MESSAGE = "id body senderKind direction createdAt senderName conversationId";
const TYPING = "senderKind senderName active expiresAt conversationId";
const DELIVERY = "id text askName askEmail openedAt dismissedAt repliedAt";
const CONVERSATION = `query($after: String, $last: Int) { myConversations(first: 1) { edges { node {
  id contactUnreadCount
  messages(after: $after, last: $last) { edges { cursor node { ${MESSAGE} } } pageInfo { hasNextPage endCursor } }
} } } }`;
// When the page reports the time spent on it (seconds): rules on time on page can fire.
const TIME_ON_PAGE_REPORTS = [10, 30, 60];

export async function mount({ channelKey, endpoint = "/graphql", root = document.body }) {
  const widget = new Widget(channelKey, endpoint);
  root.append(widget.element);
  try {
    await widget.start();
  } catch (failure) {
    widget.status.textContent = `unavailable: ${failure.message}`;
  }
  return widget;
}

class Widget {
  constructor(channelKey, endpoint) {
    this.channelKey = channelKey;
    this.storageKey = `parley-session:${channelKey}`;
    this.token = null;
    this.conversationId = null;
    this.cursor = null; // the newest message cursor read by a query: catch-up starts after it
    this.shown = new Set(); // message ids on screen
    this.deliveries = new Set(); // proactive deliveries on screen or done with
    this.unread = 0;
    this.api = connect({
      endpoint,
      token: () => this.token,
      onStatus: (status) => (this.status.textContent = status),
      onReconnect: () => this.catchUp(),
    });
    this.build();
  }

  build() {
    this.status = h("span", { class: "parley-status", "data-testid": "widget-status" }, "connecting");
    this.badge = h("span", { class: "parley-badge", "data-testid": "widget-badge", hidden: true });
    this.list = h("ol", { class: "parley-messages", "data-testid": "widget-messages" });
    this.input = h("input", { name: "body", placeholder: "Write a message…", maxlength: "5000", autocomplete: "off" });
    this.input.addEventListener("input", typingNotifier(this.api, () => this.conversationId));
    this.typing = new TypingIndicator({ class: "parley-typing", "data-testid": "widget-typing", "aria-live": "polite" });
    this.error = h("p", { class: "parley-error", role: "alert" });
    this.panel = h(
      "section",
      { class: "parley-panel", "aria-label": "Chat", hidden: true },
      h("header", {}, h("strong", {}, "Chat with us"), this.status),
      this.list,
      this.typing.element,
      this.error,
      h("form", { class: "parley-compose", onsubmit: (e) => this.send(e) }, this.input, h("button", {}, "Send")),
    );
    this.proactive = h("div", { class: "parley-proactive-stack" });
    this.launcher = h(
      "button",
      { class: "parley-launcher", "data-testid": "widget-launcher", onclick: () => this.toggle() },
      "Chat",
      this.badge,
    );
    this.element = h("div", { class: "parley-widget" }, this.proactive, this.panel, this.launcher);
    document.head.append(h("link", { rel: "stylesheet", href: new URL("widget.css", import.meta.url).href }));
  }

  async start() {
    await this.openSession();
    await this.load();
    this.api.subscribe(
      `subscription { myMessages(typing: true) { cursor message { ${MESSAGE} } typing { ${TYPING} } } }`,
      {},
      ({ myMessages }) => (myMessages.typing ? this.agentTyping(myMessages.typing) : this.received(myMessages.message)),
    );
    this.api.subscribe(`subscription { proactiveMessages { delivery { ${DELIVERY} } } }`, {}, (data) =>
      this.showProactive(data.proactiveMessages.delivery),
    );
    await this.reportPageView(0);
    for (const seconds of TIME_ON_PAGE_REPORTS) setTimeout(() => this.reportPageView(seconds), seconds * 1000);
  }

  async openSession() {
    const start = (sessionToken) =>
      this.api.request(
        `mutation($input: StartContactSessionInput!) { startContactSession(input: $input) {
          token userErrors { field code message } } }`,
        {
          input: {
            channelKey: this.channelKey,
            sessionToken,
            device: { browserLanguage: navigator.language, timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone },
          },
        },
      );
    const kept = localStorage.getItem(this.storageKey);
    let payload = (await start(kept)).startContactSession;
    if (!payload.token && kept) payload = (await start(null)).startContactSession; // an ended session
    if (!payload.token) throw new Error(userError(payload));
    this.token = payload.token;
    localStorage.setItem(this.storageKey, payload.token);
  }

  // The latest conversation's last 50 messages; with `after`, what came after that cursor.
  async load(after = null) {
    for (;;) {
      const data = await this.api.request(CONVERSATION, { after, last: after ? null : 50 });
      const conversation = data.myConversations.edges[0]?.node;
      if (!conversation) return;
      if (conversation.id !== this.conversationId) {
        if (after) return this.reload(); // a new conversation since: read it from its start
        this.conversationId = conversation.id;
        this.setUnread(conversation.contactUnreadCount);
      }
      const { edges, pageInfo } = conversation.messages;
      for (const edge of edges) this.render(edge.node, !after);
      this.cursor = pageInfo.endCursor ?? this.cursor;
      if (!after || !pageInfo.hasNextPage) return;
      after = this.cursor;
    }
  }

  // The latest conversation, from its start (a new one began: an answer, another tab).
  async reload() {
    this.conversationId = null;
    this.cursor = null;
    this.list.replaceChildren();
    this.shown.clear();
    await this.load();
  }

  async catchUp() {
    if (this.cursor) await this.load(this.cursor);
    else await this.load();
    if (this.isOpen()) await this.markRead();
  }

  received(message) {
    if (!message) return;
    if (message.conversationId === this.conversationId) this.render(message, false);
    else this.reload();
  }

  // An agent typing in this conversation (typing events carry no message and no cursor).
  agentTyping(typing) {
    if (typing.conversationId !== this.conversationId) return;
    if (typing.active) this.typing.show(`${typing.senderName ?? "Support"} is typing…`, typing.expiresAt);
    else this.typing.hide();
  }

  // `history`: loaded with the page, so it does not count as unread again.
  render(message, history) {
    if (this.shown.has(message.id)) return;
    this.shown.add(message.id);
    const mine = message.senderKind === "CONTACT";
    this.list.append(
      h(
        "li",
        { class: mine ? "parley-mine" : "parley-theirs", "data-testid": "widget-message" },
        h("span", { class: "parley-body" }, message.body),
        h("small", {}, mine ? time(message.createdAt) : `${message.senderName ?? "Support"} · ${time(message.createdAt)}`),
      ),
    );
    this.list.scrollTop = this.list.scrollHeight;
    if (!mine) this.typing.hide();
    if (!mine && !history) {
      if (this.isOpen()) this.markRead();
      else this.setUnread(this.unread + 1);
    }
  }

  setUnread(count) {
    this.unread = count;
    this.badge.textContent = String(count);
    this.badge.hidden = count === 0;
  }

  isOpen() {
    return !this.panel.hidden;
  }

  async toggle() {
    this.panel.hidden = !this.panel.hidden;
    if (this.isOpen()) {
      this.input.focus();
      await this.markRead();
    }
  }

  async markRead() {
    this.setUnread(0);
    if (!this.conversationId) return;
    await this.api.request(
      `mutation($input: ConversationIdInput!) { markConversationRead(input: $input) { userErrors { message } } }`,
      { input: { id: this.conversationId } },
    );
  }

  async send(event) {
    event.preventDefault();
    const body = this.input.value.trim();
    if (!body) return;
    this.error.textContent = "";
    const [root, mutation] = this.conversationId
      ? ["sendMessage", `mutation($input: SendMessageInput!) { sendMessage(input: $input) {
          message { ${MESSAGE} } userErrors { field code message } } }`]
      : ["startConversation", `mutation($input: StartConversationInput!) { startConversation(input: $input) {
          message { ${MESSAGE} } userErrors { field code message } } }`];
    const input = this.conversationId
      ? { conversationId: this.conversationId, body }
      : { body, websiteUrl: location.href };
    const payload = (await this.api.request(mutation, { input }))[root];
    if (userError(payload)) {
      this.error.textContent = userError(payload);
      return;
    }
    this.input.value = "";
    this.conversationId = payload.message.conversationId;
    this.render(payload.message, false);
  }

  async reportPageView(timeOnPageSeconds) {
    const data = await this.api.request(
      `mutation($input: ReportPageViewInput!) { reportPageView(input: $input) {
        delivery { ${DELIVERY} } userErrors { field code message } } }`,
      {
        input: {
          url: location.href,
          title: document.title,
          referrer: document.referrer || null,
          language: navigator.language,
          device: matchMedia("(max-width: 600px)").matches ? "MOBILE" : "DESKTOP",
          timeOnPageSeconds,
        },
      },
    );
    const delivery = data.reportPageView.delivery;
    if (delivery) this.showProactive(delivery);
  }

  // A proactive message: open it (and answer it, with a name and e-mail when it asks), or dismiss it.
  showProactive(delivery) {
    if (this.deliveries.has(delivery.id)) return;
    this.deliveries.add(delivery.id);
    const input = { deliveryId: delivery.id };
    const error = h("p", { class: "parley-error", role: "alert" });
    const card = h("aside", { class: "parley-proactive", "data-testid": "proactive" });
    const act = async (root, mutation, extra = {}) => {
      const payload = (await this.api.request(mutation, { input: { ...input, ...extra } }))[root];
      error.textContent = userError(payload) ?? "";
      return userError(payload) ? null : payload;
    };
    const dismiss = async () => {
      if (await act("dismissProactiveMessage", ID_MUTATION("dismissProactiveMessage"))) card.remove();
    };
    const answer = async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const fields = Object.fromEntries([...form].filter(([, value]) => String(value).trim()));
      const payload = await act(
        "answerProactiveMessage",
        `mutation($input: AnswerProactiveMessageInput!) { answerProactiveMessage(input: $input) {
          conversation { id } userErrors { field code message } } }`,
        { ...fields, websiteUrl: location.href },
      );
      if (!payload) return;
      card.remove();
      await this.reload();
      if (!this.isOpen()) await this.toggle();
    };
    const open = async () => {
      if (!(await act("openProactiveMessage", ID_MUTATION("openProactiveMessage")))) return;
      openButton.remove();
      card.append(
        h(
          "form",
          { class: "parley-answer", onsubmit: answer },
          delivery.askName && h("input", { name: "name", placeholder: "Your name", maxlength: "200", required: true }),
          delivery.askEmail &&
            h("input", { name: "email", type: "email", placeholder: "Your e-mail", maxlength: "254", required: true }),
          h("input", { name: "body", placeholder: "Your reply", maxlength: "5000" }),
          h("button", {}, "Reply"),
        ),
      );
    };
    const openButton = h("button", { onclick: open }, "Open");
    card.append(
      h("button", { class: "parley-dismiss", "aria-label": "Dismiss", onclick: dismiss }, "×"),
      h("p", {}, delivery.text),
      openButton,
      error,
    );
    this.proactive.append(card);
  }
}

const ID_MUTATION = (root) =>
  `mutation($input: ProactiveDeliveryIdInput!) { ${root}(input: $input) { delivery { id } userErrors { field code message } } }`;
