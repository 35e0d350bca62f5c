// A tiny GraphQL-over-HTTP client: JSON requests, and the GraphQL multipart request spec for file uploads.

export class ApiError extends Error {
  constructor(message, code = null, errors = []) {
    super(message);
    this.code = code;
    this.errors = errors;
  }
}

export function cookie(name) {
  const row = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
  return row ? decodeURIComponent(row.slice(name.length + 1)) : "";
}

function isFile(value) {
  return (typeof File !== "undefined" && value instanceof File) || (typeof Blob !== "undefined" && value instanceof Blob);
}

// Replaces every File in `variables` by null and returns the files with their object paths (multipart spec).
export function extractFiles(variables) {
  const files = [];
  const walk = (value, path) => {
    if (isFile(value)) {
      files.push({ file: value, path });
      return null;
    }
    if (Array.isArray(value)) return value.map((item, i) => walk(item, `${path}.${i}`));
    if (value && typeof value === "object") {
      const copy = {};
      for (const [key, item] of Object.entries(value)) copy[key] = walk(item, `${path}.${key}`);
      return copy;
    }
    return value;
  };
  const clean = walk(variables || {}, "variables");
  return { clean, files };
}

export function createClient({ url = "/graphql", auth = () => null } = {}) {
  async function request(query, variables = {}) {
    const headers = { Accept: "application/json" };
    const token = auth();
    if (token) headers.Authorization = `Bearer ${token}`;
    else headers["X-CSRFToken"] = cookie("csrftoken");
    const { clean, files } = extractFiles(variables);
    let body;
    if (files.length) {
      const form = new FormData();
      form.append("operations", JSON.stringify({ query, variables: clean }));
      const map = {};
      files.forEach((entry, i) => (map[String(i)] = [entry.path]));
      form.append("map", JSON.stringify(map));
      files.forEach((entry, i) => form.append(String(i), entry.file, entry.file.name || `file-${i}`));
      body = form;
    } else {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify({ query, variables: clean });
    }
    let response;
    try {
      response = await fetch(url, { method: "POST", headers, body, credentials: "same-origin" });
    } catch (err) {
      throw new ApiError("The server could not be reached. Check your connection and try again.", "NETWORK");
    }
    let answer = null;
    const text = await response.text();
    try {
      answer = JSON.parse(text);
    } catch {
      const hint = response.status === 403 ? "Your session has expired. Reload the page and sign in again." : text.slice(0, 200);
      throw new ApiError(`Request refused (HTTP ${response.status}). ${hint}`, `HTTP_${response.status}`);
    }
    if (answer.errors && answer.errors.length) {
      const first = answer.errors[0];
      throw new ApiError(first.message, first.extensions?.code || null, answer.errors);
    }
    return answer.data;
  }
  return { request };
}
