// Segments with their member counts, kept live: one segmentMembershipChanged subscription per
// listed segment (the first 20) moves the count and logs who joined and left.
import { h, time } from "../lib/api.js";

const WATCHED = 20;

export class Segments {
  constructor(api, element) {
    this.api = api;
    this.element = element;
    this.stops = [];
  }

  async show() {
    for (const stop of this.stops) stop();
    this.stops = [];
    const { segments } = await this.api.request(
      "{ segments(first: 50) { edges { node { id name visibility memberCount refreshedAt } } } }",
    );
    const log = h("ol", { class: "log", "data-testid": "segment-log" });
    const rows = segments.edges.map(({ node }) => {
      const count = h("td", { class: "number", "data-testid": "segment-count" }, String(node.memberCount));
      return { node, count, row: h("tr", { "data-testid": "segment" }, h("td", {}, node.name), h("td", {}, node.visibility.toLowerCase()), count, h("td", {}, time(node.refreshedAt))) };
    });
    for (const { node, count } of rows.slice(0, WATCHED)) {
      this.stops.push(
        this.api.subscribe(
          `subscription($id: ID!) { segmentMembershipChanged(segmentId: $id) { joinedContactIds leftContactIds } }`,
          { id: node.id },
          ({ segmentMembershipChanged: change }) => {
            const joined = change.joinedContactIds.length;
            const left = change.leftContactIds.length;
            count.textContent = String(Number(count.textContent) + joined - left);
            log.prepend(h("li", {}, `${time(new Date().toISOString())} ${node.name}: ${joined} joined, ${left} left`));
          },
        ),
      );
    }
    this.element.replaceChildren(
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Segment"), h("th", {}, "Visibility"), h("th", {}, "Members"), h("th", {}, "Refreshed"))),
        h("tbody", {}, rows.map((r) => r.row))),
      h("h3", {}, "Joins and leaves"),
      log,
    );
  }
}
