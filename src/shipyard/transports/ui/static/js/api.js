// The management API, as the signed-in browser calls it: the session cookie authenticates,
// and every state-changing call sends the CSRF token back in X-CSRF-Token.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const listeners = new Set();

// Called with the error when the API says the key is no longer good (401).
export function onSignedOut(listener) {
  listeners.add(listener);
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "shipyard_csrf") return rest.join("=");
  }
  return "";
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch("/api/v1" + path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "the server did not answer; is shipyard server still running?");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, (data && data.error) || response.statusText);
    if (response.status === 401 && path !== "/session") listeners.forEach((l) => l(error));
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);

export function q(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
  const text = search.toString();
  return text ? "?" + text : "";
}

export const enc = encodeURIComponent;

// What a refused action means for the person who clicked.
export function explain(error) {
  if (error.status === 409) return `Conflict: ${error.message}. Someone changed this meanwhile; the page now shows the current state.`;
  if (error.status === 412) return `Not possible right now: ${error.message}.`;
  if (error.status === 403) return `Refused: ${error.message}.`;
  if (error.status === 404) return `Not found: ${error.message}.`;
  return error.message;
}
