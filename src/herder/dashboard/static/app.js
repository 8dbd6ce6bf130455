// The dashboard's entry point: the hash router, the navigation and the token prompt.
//
// Routes: #/tasks (overview), #/task/ID, #/workers, #/schedules, #/submit[/TYPE]. Each view is a function
// mount(root, ...args) that draws into `root` and returns a function that stops its timers
// and streams; the router calls it when the route changes.

import { setToken, setTokenPrompter, token } from "./api.js";
import { h, setText } from "./dom.js";
import { mountSchedules } from "./schedules.js";
import { mountSubmit } from "./submit.js";
import { mountTask } from "./task.js";
import { mountTasks } from "./tasks.js";
import { mountWorkers } from "./workers.js";

const routes = [
  [/^#?\/?(tasks)?$/, "tasks", (root) => mountTasks(root)],
  [/^#\/task\/(.+)$/, "tasks", (root, m) => mountTask(root, decodeURIComponent(m[1]))],
  [/^#\/workers$/, "workers", (root) => mountWorkers(root)],
  [/^#\/schedules$/, "schedules", (root) => mountSchedules(root)],
  [/^#\/submit(?:\/(.+))?$/, "submit", (root, m) => mountSubmit(root, m[1] && decodeURIComponent(m[1]))],
];

const root = document.getElementById("view");
let unmount = null;

function route() {
  if (unmount) unmount();
  unmount = null;
  const hash = location.hash || "#/tasks";
  for (const [re, nav, mount] of routes) {
    const m = hash.match(re);
    if (m) {
      for (const a of document.querySelectorAll("nav a")) {
        a.classList.toggle("active", a.dataset.nav === nav);
      }
      const view = h("div", { class: "view" });
      root.replaceChildren(view);
      unmount = mount(view, m);
      return;
    }
  }
  root.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Not found"),
    h("p", {}, "No page here. "), h("a", { href: "#/tasks" }, "Back to the tasks")));
}

// The token prompt: one form, shown while a request waits for a token.
function promptToken({ rejected }) {
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  setText(document.getElementById("token-message"), rejected
    ? "That token was rejected. Enter the master's token."
    : "This master needs a token. Enter it to continue.");
  input.value = "";
  dialog.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      dialog.hidden = true;
      form.onsubmit = null;
      showSignOut();
      resolve(value);
    };
  });
}

function showSignOut() {
  document.getElementById("forget-token").hidden = !token();
}

document.getElementById("forget-token").addEventListener("click", () => {
  setToken(null);
  location.reload();
});

setTokenPrompter(promptToken);
window.addEventListener("hashchange", route);
showSignOut();
route();
