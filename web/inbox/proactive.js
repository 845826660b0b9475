// Proactive messages with their counters (sent, opened, replied) and their lifecycle buttons.
// No subscription carries the counters: the list is read again every 5 seconds while the tab
// is shown.
import { h, userError } from "../lib/api.js";

const POLL_MS = 5000;
const ACTIONS = { DRAFT: ["publish", "Publish"], LIVE: ["pause", "Pause"], PAUSED: ["resume", "Resume"] };

export class ProactiveMessages {
  constructor(api, element) {
    this.api = api;
    this.element = element;
    this.timer = null;
  }

  async show() {
    clearInterval(this.timer);
    this.timer = setInterval(() => (this.element.hidden ? clearInterval(this.timer) : this.load()), POLL_MS);
    await this.load();
  }

  async load() {
    const { proactiveMessages } = await this.api.request(
      `{ proactiveMessages(first: 50, orderBy: { field: UPDATED_AT, direction: DESC }) { edges { node {
        id name status error sent opened replied channel { name } } } } }`,
    );
    const error = h("p", { class: "error", role: "alert" });
    const act = (verb, id) => async () => {
      const root = `${verb}ProactiveMessage`;
      const data = await this.api.request(
        `mutation($input: ProactiveMessageIdInput!) { ${root}(input: $input) { userErrors { field code message } } }`,
        { input: { id } },
      );
      error.textContent = userError(data[root]) ?? "";
      await this.load();
    };
    const number = (value, name) => h("td", { class: "number", "data-testid": name }, String(value));
    this.element.replaceChildren(
      error,
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["Name", "Status", "Channel", "Sent", "Opened", "Replied", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          proactiveMessages.edges.map(({ node }) => {
            const action = ACTIONS[node.status];
            return h(
              "tr",
              { "data-testid": "proactive-message", "data-name": node.name },
              h("td", {}, node.name),
              h("td", { "data-testid": "proactive-status", title: node.error ?? "" }, node.status.toLowerCase().replace("_", " ")),
              h("td", {}, node.channel?.name ?? ""),
              number(node.sent, "sent"),
              number(node.opened, "opened"),
              number(node.replied, "replied"),
              h("td", {}, action ? h("button", { onclick: act(action[0], node.id) }, action[1]) : null),
            );
          }),
        ),
      ),
    );
  }
}
