// The contact's panel beside a conversation: details, attributes, tags, notes (and a new
// note), and the events timeline (page views and named events, newest first).
import { h, time, userError } from "../lib/api.js";

const CONTACT = `query($id: ID!) { contact(id: $id) {
  id name email phone country city vip blocked lastSeenAt tags
  attributes { key value definition { label } }
  notes(first: 20) { edges { node { id body createdAt author { name } } } }
  events(first: 20) { edges { node { id kind name url occurredAt } } }
} }`;

export class ContactPanel {
  constructor(api, element) {
    this.api = api;
    this.element = element;
  }

  async show(id) {
    const { contact } = await this.api.request(CONTACT, { id });
    if (!contact) {
      this.element.replaceChildren();
      return;
    }
    const details = [
      ["E-mail", contact.email],
      ["Phone", contact.phone],
      ["Location", [contact.city, contact.country].filter(Boolean).join(", ")],
      ["Last seen", time(contact.lastSeenAt)],
      ...contact.attributes.map((a) => [a.definition.label, a.value == null ? "" : String(a.value)]),
    ].filter(([, value]) => value);
    const note = h("textarea", { name: "body", rows: "2", maxlength: "5000", placeholder: "Add a note…" });
    const error = h("p", { class: "error", role: "alert" });
    const addNote = async (event) => {
      event.preventDefault();
      if (!note.value.trim()) return;
      const { addContactNote } = await this.api.request(
        `mutation($input: AddContactNoteInput!) { addContactNote(input: $input) { userErrors { field code message } } }`,
        { input: { contactId: contact.id, body: note.value.trim() } },
      );
      error.textContent = userError(addContactNote) ?? "";
      if (!error.textContent) await this.show(id);
    };
    this.element.replaceChildren(
      h("h2", {}, contact.name || contact.email || "Visitor", contact.vip ? " ★" : ""),
      contact.blocked ? h("p", { class: "error" }, "Blocked") : "",
      h("dl", {}, details.flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value)])),
      h("h3", {}, "Tags"),
      h("div", { "data-testid": "contact-tags" }, contact.tags.length ? contact.tags.map((t) => h("span", { class: "tag" }, t)) : "none"),
      h("h3", {}, "Notes"),
      h("ul", {}, contact.notes.edges.map(({ node }) =>
        h("li", {}, node.body, h("br"), h("small", {}, `${node.author?.name ?? ""} · ${time(node.createdAt)}`)))),
      h("form", { onsubmit: addNote }, note, h("button", {}, "Add note"), error),
      h("h3", {}, "Events"),
      h("ul", { "data-testid": "contact-events" }, contact.events.edges.map(({ node }) =>
        h("li", {}, node.kind === "PAGE_VIEW" ? `Viewed ${node.url}` : node.name, h("br"), h("small", {}, time(node.occurredAt))))),
    );
  }
}
