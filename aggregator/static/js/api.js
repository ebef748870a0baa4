/*
 * The operator's REST calls. The token lives in sessionStorage only (never in a URL, never
 * logged) and goes out in the Authorization header.
 */

const TOKEN_KEY = "jeisson.operatorToken";

export class Unauthorized extends Error {}

export const session = {
  token: null,
  load() {
    this.token = sessionStorage.getItem(TOKEN_KEY);
    return this.token;
  },
  save(token) {
    this.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  forget() {
    this.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: "no-store",
    credentials: "omit",
    signal: options.signal,
  });
  if (response.status === 401) throw new Unauthorized("token refused");
  return response;
}

export async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.message || body.error || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** GET a path and return its JSON; throw an Error with the server's message otherwise. */
export async function getJson(path, options = {}) {
  const response = await api(path, options);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

export const eventPath = (eventId, tail = "") => `/api/v1/events/${encodeURIComponent(eventId)}${tail}`;
