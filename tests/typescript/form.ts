// A frontend-like program written against the types openapi-typescript generates from the
// service's /openapi.json: it builds a form from a category's effective schema (types, rules,
// options), fills it from a listing's values and writes changes back. It must type-check under
// `strict` without a single cast: the OpenAPI document has to say what every answer holds.
import type { components, paths } from "./generated/api";

type Schemas = components["schemas"];
type CategoryAttribute = Schemas["CategoryAttributeView"];
type AttributeType = Schemas["AttributeTypeName"];
type TypedValue = Schemas["TypedValue"];
type SchemaAnswer =
  paths["/api/v2/marketplace/categories/{id}/attributes"]["get"]["responses"][200]["content"]["application/json"];
type ValuesAnswer =
  paths["/api/v2/marketplace/listings/{id}/attributes"]["get"]["responses"][200]["content"]["application/json"];
type Patch =
  paths["/api/v2/marketplace/listings/{id}/attributes"]["patch"]["requestBody"]["content"]["application/json"];
type ErrorAnswer = Schemas["ErrorView"];
type V1ListingValues =
  paths["/api/v1/marketplace/listings/{id}/attributes"]["get"]["responses"][200]["content"]["application/json"];
type V1Ranges =
  paths["/api/v1/marketplace/categories/{id}/attribute-ranges"]["get"]["responses"][200]["content"]["application/json"];

interface Choice {
  value: string;
  label: string;
}

type Field =
  | { kind: "number"; code: string; label: string; required: boolean; min?: number; max?: number }
  | { kind: "text"; code: string; label: string; required: boolean; multiline: boolean; pattern?: string; maxLength?: number }
  | { kind: "choice"; code: string; label: string; required: boolean; multiple: boolean; choices: Choice[] }
  | { kind: "toggle"; code: string; label: string; required: boolean }
  | { kind: "date"; code: string; label: string; required: boolean };

/** The hint under a field: its bounds as the rules give them. */
function hint(rules: Schemas["RulesBody"]): string {
  const parts: string[] = [];
  if (rules.min != null) parts.push(`from ${rules.min.toFixed(0)}`);
  if (rules.max != null) parts.push(`to ${rules.max.toFixed(0)}`);
  if (rules.maxLength != null) parts.push(`up to ${rules.maxLength.toFixed(0)} characters`);
  if (rules.pattern != null) parts.push(`format ${rules.pattern.trim()}`);
  return parts.join(", ");
}

function field(attribute: CategoryAttribute): Field {
  const bounds = hint(attribute.validation_rules);
  const base = {
    code: attribute.code,
    label: bounds === "" ? attribute.display_name : `${attribute.display_name} (${bounds})`,
    required: attribute.is_required || attribute.validation_rules.required === true,
  };
  const rules = attribute.validation_rules;
  const choices: Choice[] = attribute.options.map((option) => ({ value: option.value, label: option.label }));
  const type: AttributeType = attribute.attribute_type;
  switch (type) {
    case "number":
      return { ...base, kind: "number", min: rules.min ?? undefined, max: rules.max ?? undefined };
    case "text":
    case "textarea":
      return {
        ...base,
        kind: "text",
        multiline: type === "textarea",
        pattern: rules.pattern ?? undefined,
        maxLength: rules.maxLength ?? undefined,
      };
    case "select":
    case "color":
    case "size":
      return { ...base, kind: "choice", multiple: false, choices };
    case "multiselect":
      return { ...base, kind: "choice", multiple: true, choices };
    case "boolean":
      return { ...base, kind: "toggle" };
    case "date":
      return { ...base, kind: "date" };
    default: {
      const unknown: never = type;
      throw new Error(`a type the form does not know: ${String(unknown)}`);
    }
  }
}

/** The message a form shows under a field, or nothing when the value passes its rules. */
function problem(f: Field, value: TypedValue | undefined): string | undefined {
  if (value === undefined) {
    return f.required ? "required" : undefined;
  }
  switch (f.kind) {
    case "number":
      if (typeof value !== "number") return "a number";
      if (f.min !== undefined && value < f.min) return `at least ${f.min}`;
      if (f.max !== undefined && value > f.max) return `at most ${f.max}`;
      return undefined;
    case "text":
      if (typeof value !== "string") return "a text";
      if (f.maxLength !== undefined && value.length > f.maxLength) return `at most ${f.maxLength} characters`;
      if (f.pattern !== undefined && !new RegExp(`^(?:${f.pattern})$`).test(value)) return "the expected format";
      return undefined;
    case "choice": {
      const chosen = Array.isArray(value) ? value : [String(value)];
      const allowed = new Set(f.choices.map((c) => c.value));
      return chosen.every((c) => allowed.has(c)) ? undefined : "one of the options";
    }
    case "toggle":
      return typeof value === "boolean" ? undefined : "yes or no";
    case "date":
      return typeof value === "string" && /^\d{4}-\d{2}-\d{2}$/.test(value) ? undefined : "a date";
  }
}

async function json<T>(response: Response): Promise<T> {
  if (!response.ok) {
    const error: ErrorAnswer = await response.json();
    throw new Error(`${response.status} ${error.error}: ${error.detail}`);
  }
  return response.json();
}

export async function editListing(base: string, category: number, listing: number, token: string): Promise<string[]> {
  const schema = await json<SchemaAnswer>(await fetch(`${base}/api/v2/marketplace/categories/${category}/attributes?lang=en`));
  const fields = schema.data.map(field);
  const current = await json<ValuesAnswer>(await fetch(`${base}/api/v2/marketplace/listings/${listing}/attributes`));
  const values = new Map<string, TypedValue>(current.data.values.map((v) => [v.code, v.value]));
  const problems = fields.flatMap((f) => {
    const message = problem(f, values.get(f.code));
    return message === undefined ? [] : [`${f.label}: ${message}`];
  });
  const patch: Patch = {};
  for (const f of fields) {
    if (f.kind === "number" && f.code === "year") {
      patch[f.code] = f.max ?? 2026;
    }
    if (f.kind === "number" && f.code === "mileage") {
      patch[f.code] = { value: 120000, unit: "km" };
    }
    if (f.kind === "choice" && f.multiple && f.choices.length > 0) {
      patch[f.code] = [f.choices[0].value];
    }
  }
  patch["city"] = null;
  const written = await json<ValuesAnswer>(
    await fetch(`${base}/api/v2/marketplace/listings/${listing}/attributes`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(patch),
    }),
  );
  return problems.concat(written.data.values.map((v) => `${v.code}=${JSON.stringify(v.value)}${v.unit ? ` ${v.unit}` : ""}`));
}

/** The monolith's listing page from the v1 routes: the card's attributes, labelled in the
 * reader's language, and the category's range filters. */
export async function legacyListingPage(base: string, category: number, listing: number, language: string): Promise<string[]> {
  const values = await json<V1ListingValues>(await fetch(`${base}/api/v1/marketplace/listings/${listing}/attributes?lang=${language}`));
  const ranges = await json<V1Ranges>(await fetch(`${base}/api/v1/marketplace/categories/${category}/attribute-ranges`));
  const lines = values.data
    .filter((v) => v.show_in_card)
    .map((v) => `${v.translations[language] ?? v.display_name}: ${v.display_value}`);
  for (const [name, range] of Object.entries(ranges.data)) {
    lines.push(`${name}: ${range.min.toFixed(0)}–${range.max.toFixed(0)}, step ${range.step}, ${range.count} listings`);
  }
  return lines;
}
