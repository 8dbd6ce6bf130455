// A form built from a task type's params JSON Schema (as pydantic writes it).
//
// integer, number, string and boolean properties become inputs with their defaults, bounds and
// `required`; enums become a select; anything else (arrays, objects, unions, Any) a JSON
// textarea. A type without a params model gets one JSON textarea for all its params.
// buildForm(schema) -> {element, read()}; read() returns the params object or throws
// FieldError naming the field.

import { h } from "./dom.js";

export class FieldError extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

const SIMPLE = new Set(["integer", "number", "string", "boolean"]);

// Follow $ref, a one-item allOf, and Optional[X] (anyOf X | null) down to one property schema.
function resolve(prop, defs) {
  let p = prop || {};
  for (let depth = 0; depth < 5; depth++) {
    if (p.$ref) {
      const name = p.$ref.split("/").pop();
      p = { ...(defs[name] || {}), ...withoutKeys(p, ["$ref"]) };
    } else if (Array.isArray(p.allOf) && p.allOf.length === 1) {
      p = { ...p.allOf[0], ...withoutKeys(p, ["allOf"]) };
    } else if (Array.isArray(p.anyOf)) {
      const options = p.anyOf.filter((o) => o.type !== "null");
      if (options.length !== 1) return p;
      p = { ...options[0], ...withoutKeys(p, ["anyOf"]), nullable: true };
    } else {
      return p;
    }
  }
  return p;
}

function withoutKeys(obj, keys) {
  const out = { ...obj };
  for (const k of keys) delete out[k];
  return out;
}

function kindOf(p) {
  if (Array.isArray(p.enum)) return "enum";
  if (p.const !== undefined) return "json";
  return SIMPLE.has(p.type) ? p.type : "json";
}

export function buildForm(schema) {
  const props = schema && schema.type === "object" ? schema.properties : null;
  if (!props || !Object.keys(props).length) {
    const field = jsonField("params", { title: "Params (JSON object)", default: {} }, false);
    return {
      element: h("div", { class: "fields" }, field.element),
      read: () => {
        const value = field.read();
        if (value === undefined) return {};
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          throw new FieldError("params", "must be a JSON object");
        }
        return value;
      },
    };
  }
  const defs = schema.$defs || schema.definitions || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(props).map(([name, raw]) => {
    const p = resolve(raw, defs);
    const req = required.has(name);
    switch (kindOf(p)) {
      case "integer":
      case "number":
        return numberField(name, p, req);
      case "string":
        return stringField(name, p, req);
      case "boolean":
        return boolField(name, p);
      case "enum":
        return enumField(name, p, req);
      default:
        return jsonField(name, p, req);
    }
  });
  return {
    element: h("div", { class: "fields" }, fields.map((f) => f.element)),
    read: () => {
      const params = {};
      for (const f of fields) {
        const value = f.read();
        if (value !== undefined) params[f.name] = value;
      }
      return params;
    },
  };
}

function wrap(name, p, req, control, hint) {
  const id = `param-${name}`;
  control.id = id;
  const description = p.description ? h("div", { class: "hint" }, p.description) : null;
  return h("div", { class: "field" },
    h("label", { for: id }, p.title || name, req ? h("span", { class: "req", title: "required" }, " *") : null),
    control,
    hint ? h("div", { class: "hint" }, hint) : null,
    description);
}

function bounds(p) {
  const parts = [];
  if (p.minimum !== undefined) parts.push(`≥ ${p.minimum}`);
  if (p.exclusiveMinimum !== undefined) parts.push(`> ${p.exclusiveMinimum}`);
  if (p.maximum !== undefined) parts.push(`≤ ${p.maximum}`);
  if (p.exclusiveMaximum !== undefined) parts.push(`< ${p.exclusiveMaximum}`);
  if (p.nullable) parts.push("optional");
  return parts.join(", ");
}

function numberField(name, p, req) {
  const integer = p.type === "integer";
  const input = h("input", {
    type: "number", name, "data-testid": `param-${name}`,
    step: integer ? 1 : "any", min: p.minimum, max: p.maximum, required: req,
    value: p.default ?? "",
  });
  const element = wrap(name, p, req, input, [integer ? "integer" : "number", bounds(p)]
    .filter(Boolean).join(", "));
  return {
    name, element,
    read: () => {
      const raw = input.value.trim();
      if (raw === "") {
        if (req) throw new FieldError(name, "is required");
        return undefined;
      }
      const value = Number(raw);
      if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
        throw new FieldError(name, `must be ${integer ? "an integer" : "a number"}`);
      }
      return value;
    },
  };
}

function stringField(name, p, req) {
  const long = (p.maxLength ?? 0) > 1000 || p.format === "textarea";
  const attrs = {
    name, "data-testid": `param-${name}`, required: req, value: p.default ?? "",
    minlength: p.minLength, maxlength: p.maxLength, pattern: long ? null : p.pattern,
  };
  const input = long ? h("textarea", { ...attrs, rows: 6 }) : h("input", { type: "text", ...attrs });
  return {
    name, element: wrap(name, p, req, input, p.nullable ? "optional" : ""),
    read: () => {
      if (input.value === "" && !req) return undefined;
      return input.value;
    },
  };
}

function boolField(name, p) {
  const input = h("input", {
    type: "checkbox", name, "data-testid": `param-${name}`, checked: p.default === true,
  });
  return { name, element: wrap(name, p, false, input, ""), read: () => input.checked };
}

function enumField(name, p, req) {
  const select = h("select", { name, "data-testid": `param-${name}`, required: req },
    !req || p.default === undefined ? h("option", { value: "" }, "—") : null,
    p.enum.map((v, i) => h("option", { value: String(i), selected: v === p.default },
      typeof v === "string" ? v : JSON.stringify(v))));
  return {
    name, element: wrap(name, p, req, select, ""),
    read: () => {
      if (select.value === "") {
        if (req) throw new FieldError(name, "is required");
        return undefined;
      }
      return p.enum[Number(select.value)];
    },
  };
}

function jsonField(name, p, req) {
  const area = h("textarea", {
    name, rows: 4, class: "mono", "data-testid": `param-${name}`, required: req,
    spellcheck: "false",
    value: p.default === undefined ? "" : JSON.stringify(p.default, null, 1),
  });
  return {
    name, element: wrap(name, p, req, area, "JSON"),
    read: () => {
      const raw = area.value.trim();
      if (raw === "") {
        if (req) throw new FieldError(name, "is required");
        return undefined;
      }
      try {
        return JSON.parse(raw);
      } catch {
        throw new FieldError(name, "is not valid JSON");
      }
    },
  };
}
