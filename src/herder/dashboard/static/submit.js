// Submit a task (#/submit, or #/submit/TYPE): pick a registered type, fill the form built
// from its params schema, set priority and timeout, POST, then open the task's page.

import { api } from "./api.js";
import { fill, h, setText } from "./dom.js";
import { buildForm, FieldError } from "./schemaform.js";

export function mountSubmit(root, preselect) {
  let types = [];
  let form = null;
  const typeSelect = h("select", { id: "submit-type", "data-testid": "submit-type", onchange: pick });
  const doc = h("p", { class: "muted", "data-testid": "submit-doc" });
  const fieldsBox = h("div");
  const priority = h("input", {
    id: "submit-priority", type: "number", step: 1, value: 0, "data-testid": "submit-priority",
  });
  const timeout = h("input", {
    id: "submit-timeout", type: "number", step: "any", min: 0, placeholder: "none",
    "data-testid": "submit-timeout",
  });
  const error = h("div", { class: "error-text", role: "alert", "data-testid": "submit-error" });
  const button = h("button", { type: "submit", class: "primary", "data-testid": "submit-button" },
    "Submit");
  const formEl = h("form", { class: "submit-form", onsubmit: submit },
    h("div", { class: "field" }, h("label", { for: "submit-type" }, "Type"), typeSelect),
    doc,
    h("fieldset", {}, h("legend", {}, "Params"), fieldsBox),
    h("fieldset", { class: "inline" }, h("legend", {}, "Options"),
      h("div", { class: "field" }, h("label", { for: "submit-priority" }, "Priority"), priority,
        h("div", { class: "hint" }, "higher runs first")),
      h("div", { class: "field" }, h("label", { for: "submit-timeout" }, "Timeout (s)"), timeout,
        h("div", { class: "hint" }, "empty: no limit"))),
    h("div", { class: "actions" }, button, error));
  fill(root, h("section", { class: "card narrow" }, h("h2", {}, "Submit a task"), formEl));

  function pick() {
    const type = types.find((t) => t.name === typeSelect.value);
    setText(error, "");
    if (!type) return;
    setText(doc, type.doc || "");
    form = buildForm(type.params_schema);
    fill(fieldsBox, form.element);
  }

  async function submit(event) {
    event.preventDefault();
    setText(error, "");
    let params;
    try {
      params = form.read();
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      setText(error, `params.${err.message}`);
      return;
    }
    const body = { type: typeSelect.value, params, priority: Number(priority.value || 0) };
    if (timeout.value !== "") body.timeout = Number(timeout.value);
    button.disabled = true;
    try {
      const task = await api.submit(body);
      location.hash = `#/task/${encodeURIComponent(task.id)}`;
    } catch (err) {
      setText(error, err.message);
    } finally {
      button.disabled = false;
    }
  }

  api.types().then((answer) => {
    types = answer.types;
    fill(typeSelect, types.map((t) => h("option", { value: t.name }, t.name)));
    if (preselect && types.some((t) => t.name === preselect)) typeSelect.value = preselect;
    pick();
  }).catch((err) => setText(error, `Could not load the task types: ${err.message}`));
  return () => {};
}
