// The conversations tab: views and filters, the list (kept live by conversationEvents and the
// unread indicator), one conversation with its messages (live by messageAdded), reply, snooze
// presets, resolve, reopen, assign, the contact's panel, and "Visitor is typing…" (inboxEvents TYPING).
import { h, time, typingNotifier, TypingIndicator, userError } from "../lib/api.js";
import { ContactPanel } from "./contact.js";

const PAGE = 30;
const LIST = `query($view: InboxView!, $filter: ConversationFilter, $first: Int) {
  conversations(view: $view, filter: $filter, first: $first) { edges { node {
    id status unreadCount vip lastMessageAt contact { name email } assignee { name } lastMessage { body }
  } } } }`;
const MESSAGE = "id body direction senderKind senderName createdAt";
const CONVERSATION = `query($id: ID!) { conversation(id: $id) {
  id status snoozedUntil tags websiteUrl assignee { id name } team { name } contact { id }
  messages(last: 50) { edges { node { ${MESSAGE} } } }
} }`;
const CONVERSATION_PAYLOAD = "conversation { id } userErrors { field code message }";
const SNOOZE_PRESETS = [
  ["LATER_TODAY", "Later today"],
  ["TOMORROW", "Tomorrow"],
  ["NEXT_WEEK", "Next week"],
];

export class Conversations {
  constructor(api, element, agent) {
    this.api = api;
    this.element = element;
    this.agent = agent;
    this.view = "ALL";
    this.selected = null;
    this.stopMessages = null;
    this.list = element.querySelector(".list");
    this.detail = element.querySelector(".detail");
    this.contact = new ContactPanel(api, element.querySelector(".contact"));
    this.agents = null;
    this.typing = new TypingIndicator({ class: "typing", "data-testid": "typing", "aria-live": "polite" });
    this.notifyTyping = typingNotifier(api, () => this.selected);
    for (const button of element.querySelectorAll("[data-view]")) {
      button.addEventListener("click", () => {
        for (const other of element.querySelectorAll("[data-view]")) other.classList.toggle("active", other === button);
        this.view = button.dataset.view;
        this.refresh();
      });
    }
    for (const control of element.querySelectorAll(".views select, .views input")) {
      control.addEventListener("change", () => this.refresh());
    }
    api.subscribe("subscription { conversationEvents { cursor kind conversationId } }", {}, ({ conversationEvents }) => {
      this.refresh();
      if (conversationEvents.conversationId === this.selected) this.open(this.selected);
    });
    api.subscribe(
      `subscription { inboxEvents(filter: {kinds: [TYPING, TYPING_STOPPED]}) {
        conversationId typing { senderKind active expiresAt } } }`,
      {},
      ({ inboxEvents }) => this.visitorTyping(inboxEvents),
    );
  }

  async show() {
    await this.refresh();
  }

  filter() {
    const value = (name) => this.element.querySelector(`.views [name=${name}]`);
    const tag = value("tag").value.trim();
    return {
      status: value("status").value || null,
      unread: value("unread").checked || null,
      vip: value("vip").checked || null,
      tags: tag ? [tag] : null,
    };
  }

  // Several events in a row (a reply moves the list and the indicator) make one request.
  refresh() {
    clearTimeout(this.pending);
    return new Promise((resolve) => {
      this.pending = setTimeout(() => this.load().then(resolve), 50);
    });
  }

  async load() {
    const data = await this.api.request(LIST, { view: this.view, filter: this.filter(), first: PAGE });
    this.list.replaceChildren(
      ...data.conversations.edges.map(({ node }) =>
        h(
          "li",
          {
            "data-testid": "conversation-item",
            "data-id": node.id,
            class: [node.unreadCount && "unread", node.id === this.selected && "selected"].filter(Boolean).join(" "),
            onclick: () => this.open(node.id),
          },
          h("strong", {}, node.contact?.name || node.contact?.email || "Visitor"),
          h("span", {}, node.unreadCount ? h("span", { class: "pill" }, String(node.unreadCount)) : node.status.toLowerCase()),
          h("span", { class: "snippet" }, node.lastMessage?.body ?? ""),
        ),
      ),
    );
  }

  async open(id) {
    if (id !== this.selected) {
      this.stopMessages?.();
      this.typing.hide();
      this.selected = id;
      this.stopMessages = this.api.subscribe(
        `subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { ${MESSAGE} } } }`,
        { id },
        ({ messageAdded }) => this.appendMessage(messageAdded.message, true),
      );
    }
    const [{ conversation }] = await Promise.all([
      this.api.request(CONVERSATION, { id }),
      this.agents ?? this.loadAgents(),
    ]);
    if (!conversation) return;
    this.shown = new Set();
    this.messages = h("ol", { class: "messages", "data-testid": "messages" });
    this.renderDetail(conversation);
    for (const { node } of conversation.messages.edges) this.appendMessage(node, false);
    await this.contact.show(conversation.contact.id);
    await this.mutate("markConversationRead", "ConversationIdInput", { id });
  }

  // The visitor typing in the open conversation (agents' own notices come here too: not shown).
  visitorTyping({ conversationId, typing }) {
    if (conversationId !== this.selected || typing?.senderKind !== "CONTACT") return;
    if (typing.active) this.typing.show("Visitor is typing…", typing.expiresAt);
    else this.typing.hide();
  }

  async loadAgents() {
    const data = await this.api.request("{ agents(first: 100) { edges { node { id name deactivatedAt } } } }");
    this.agents = data.agents.edges.map((e) => e.node).filter((a) => !a.deactivatedAt);
  }

  renderDetail(conversation) {
    const error = h("p", { class: "error", role: "alert" });
    const act = (root, type, input) => async () => {
      error.textContent = (await this.mutate(root, type, input)) ?? "";
    };
    const status = (value, extra = {}) =>
      act("setConversationStatus", "SetConversationStatusInput", { id: conversation.id, status: value, ...extra });
    const assign = h(
      "select",
      {
        "aria-label": "Assignee",
        onchange: (e) =>
          act("assignConversation", "AssignConversationInput", { id: conversation.id, assigneeId: e.target.value || null })(),
      },
      h("option", { value: "" }, "Unassigned"),
      this.agents.map((a) => h("option", { value: a.id, selected: a.id === conversation.assignee?.id }, a.name)),
    );
    const reply = h("input", { name: "body", placeholder: "Reply…", maxlength: "5000", autocomplete: "off" });
    reply.addEventListener("input", this.notifyTyping);
    const send = async (event) => {
      event.preventDefault();
      const body = reply.value.trim();
      if (!body) return;
      const { sendMessage } = await this.api.request(
        `mutation($input: SendMessageInput!) { sendMessage(input: $input) {
          message { ${MESSAGE} } userErrors { field code message } } }`,
        { input: { conversationId: conversation.id, body } },
      );
      error.textContent = userError(sendMessage) ?? "";
      if (sendMessage.message) {
        reply.value = "";
        this.appendMessage(sendMessage.message, false);
      }
    };
    this.detail.replaceChildren(
      h(
        "header",
        {},
        h("h2", { "data-testid": "conversation-status" }, `${conversation.status.toLowerCase()}`,
          conversation.snoozedUntil ? ` until ${time(conversation.snoozedUntil)}` : ""),
        conversation.status === "OPEN"
          ? [
              ...SNOOZE_PRESETS.map(([preset, label]) => h("button", { onclick: status("SNOOZED", { snoozePreset: preset }) }, `Snooze: ${label}`)),
              h("button", { class: "primary", onclick: status("RESOLVED") }, "Resolve"),
            ]
          : h("button", { onclick: status("OPEN") }, "Reopen"),
        assign,
        h("button", { onclick: act("assignConversation", "AssignConversationInput", { id: conversation.id, assigneeId: this.agent.id }) }, "Assign to me"),
      ),
      error,
      this.messages,
      this.typing.element,
      h("form", { class: "reply", onsubmit: send }, reply, h("button", { class: "primary" }, "Send")),
    );
    for (const li of this.list.children) li.classList.toggle("selected", li.dataset.id === conversation.id);
  }

  appendMessage(message, live) {
    if (!this.messages || this.shown.has(message.id)) return;
    this.shown.add(message.id);
    this.messages.append(
      h(
        "li",
        { class: message.direction === "OUTBOUND" ? "out" : "in", "data-testid": "message" },
        h("span", {}, message.body),
        h("small", {}, `${message.senderName ?? message.senderKind.toLowerCase()} · ${time(message.createdAt)}`),
      ),
    );
    this.messages.scrollTop = this.messages.scrollHeight;
    if (message.direction === "INBOUND") this.typing.hide();
    // The open conversation is read as its messages arrive; the list follows once it is.
    const read = live && message.direction === "INBOUND";
    (read ? this.mutate("markConversationRead", "ConversationIdInput", { id: this.selected }) : Promise.resolve()).then(
      () => this.refresh(),
    );
  }

  // A conversation mutation; its first user error, or null. The list follows by its events.
  async mutate(root, type, input) {
    const data = await this.api.request(
      `mutation($input: ${type}!) { ${root}(input: $input) { ${CONVERSATION_PAYLOAD} } }`,
      { input },
    );
    return userError(data[root]);
  }
}
