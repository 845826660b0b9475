// The agents' inbox: sign in, then three tabs (conversations, segments, proactive messages).
// The agent's token lives in sessionStorage: it survives a reload of this tab, is not shared
// with other tabs or windows, and is gone when the tab closes (localStorage would keep it on
// disk for any later page of this origin). Logging out revokes it on the server too.
import { connect, userError } from "../lib/api.js";
import { Conversations } from "./conversations.js";
import { ProactiveMessages } from "./proactive.js";
import { Segments } from "./segments.js";

const TOKEN = "parley-inbox-token";
const $ = (selector) => document.querySelector(selector);

const api = connect({ token: () => sessionStorage.getItem(TOKEN) });

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const error = $("[data-testid=login-error]");
  error.textContent = "";
  try {
    const { login } = await api.request(
      `mutation($input: LoginInput!) { login(input: $input) { token userErrors { field code message } } }`,
      { input: { email: form.get("email"), password: form.get("password"), workspace: form.get("workspace") || null } },
    );
    if (!login.token) {
      error.textContent = userError(login);
      return;
    }
    sessionStorage.setItem(TOKEN, login.token);
    location.reload(); // the app starts with the new token (and a socket that carries it)
  } catch (failure) {
    error.textContent = failure.message;
  }
}

async function logOut() {
  await api.request("mutation { logout { userErrors { message } } }").catch(() => {});
  sessionStorage.removeItem(TOKEN);
  location.reload();
}

async function start() {
  $("#login").addEventListener("submit", signIn);
  const viewer = sessionStorage.getItem(TOKEN)
    ? (await api.request("{ viewer { agent { id name } } }").catch(() => null))?.viewer
    : null;
  if (!viewer?.agent) {
    sessionStorage.removeItem(TOKEN);
    $("#login").hidden = false;
    return;
  }
  $("#app").hidden = false;
  $("#me").textContent = viewer.agent.name;
  $("#logout").addEventListener("click", logOut);

  const tabs = {
    conversations: new Conversations(api, $("#conversations"), viewer.agent),
    segments: new Segments(api, $("#segments")),
    proactive: new ProactiveMessages(api, $("#proactive")),
  };
  for (const button of document.querySelectorAll("[data-tab]")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll("[data-tab]")) other.classList.toggle("active", other === button);
      for (const [name, tab] of Object.entries(tabs)) tab.element.hidden = name !== button.dataset.tab;
      tabs[button.dataset.tab].show();
    });
  }
  api.subscribe("subscription { unreadCount }", {}, ({ unreadCount }) => {
    const indicator = $("[data-testid=unread-indicator]");
    indicator.textContent = String(unreadCount);
    indicator.classList.toggle("some", unreadCount > 0);
    tabs.conversations.refresh();
  });
  await tabs.conversations.show();
}

start();
