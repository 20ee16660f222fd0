// API keys in the browser. When the server requires one (GET /health says auth_required),
// the page asks for it once, keeps it in localStorage, and sends it as a Bearer header on
// fetch and as the `token` query parameter on the WebSocket (browsers cannot set headers
// there). A key the server refuses is forgotten and asked for again, with the reason.

const KEY_STORE = "eva.api_key";
// The server closes a WebSocket with this code when its key is missing or wrong.
export const CLOSE_UNAUTHORIZED = 4401;

export function storedKey() {
  return localStorage.getItem(KEY_STORE);
}

export function forgetKey() {
  localStorage.removeItem(KEY_STORE);
}

export function apiFetch(url, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = storedKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return fetch(url, { ...options, headers });
}

async function authRequired() {
  try {
    const response = await fetch("/health");
    return Boolean((await response.json()).auth_required);
  } catch {
    return false; // the server is down: the connection's retries will tell
  }
}

async function keyAccepted() {
  try {
    return (await apiFetch("/voices")).status !== 401;
  } catch {
    return true; // unreachable is not refused: the connection's retries will tell
  }
}

// Shows the key form with `message`; resolves once a key was entered (and stored).
function askForKey(message) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  document.getElementById("key-message").textContent = message;
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (submitted) => {
      submitted.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      localStorage.setItem(KEY_STORE, key);
      input.value = "";
      form.hidden = true;
      resolve(key);
    };
  });
}

// Resolves once the page holds a key the server accepts, or at once when none is needed.
// `reason`: why a key is asked for although the page has one (the server refused it).
export async function ensureKey(reason = null) {
  if (!reason && !(await authRequired())) return;
  let message = "This Eva is private. Enter your API key to talk to her.";
  let asked = false;
  while (!storedKey() || !(await keyAccepted())) {
    if (storedKey()) {
      forgetKey();
      message = asked
        ? "That key was not accepted. Check it and enter it again."
        : reason || "Your saved key is no longer accepted. Enter a valid API key.";
    }
    await askForKey(message);
    asked = true;
  }
}
