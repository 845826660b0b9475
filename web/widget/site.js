// The made-up shop's own script: where a customer's site configures the widget. The demo takes
// the channel's public key from the address (?key=…) and keeps it in the links between pages.
import { mount } from "./widget.js";

const key = new URLSearchParams(location.search).get("key");
for (const link of document.querySelectorAll("a[data-keep-key]")) {
  if (key) link.search = new URLSearchParams({ key }).toString();
}
if (key) {
  mount({ channelKey: key });
} else {
  document.querySelector("main").append("Add ?key=<your widget channel's public key> to this page's address.");
}
