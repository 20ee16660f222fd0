// The WebSocket to Eva (/ws), kept alive: when it drops, it comes back by itself with
// exponential backoff and resumes the same conversation (session_id), so a server restart
// or a network hiccup costs the person a few seconds, not their conversation.

import { CLOSE_UNAUTHORIZED, storedKey } from "./access.js";

const FIRST_RETRY_S = 0.5;
const MAX_RETRY_S = 10; // long enough not to hammer a restarting server, short enough to wait
const PING_EVERY_S = 15; // a silent half-open socket is otherwise only noticed on send
const PONG_TIMEOUT_S = 10;
// The server closes with this code when the session asked for does not exist (say, the
// conversation was made on another server or its data was wiped): start a new one.
const CLOSE_UNKNOWN_SESSION = 4404;
// RFC 6455's "Try Again Later": Eva is full or stopping; its busy event says when.
const CLOSE_TRY_AGAIN_LATER = 1013;

export class Connection {
  // handlers: onOpen(), onEvent(object), onAudio(ArrayBuffer), onDown(retryInSeconds, closeCode)
  // (retryInSeconds is null when the connection will not retry by itself: a refused key)
  constructor(handlers) {
    this.handlers = handlers;
    this.socket = null;
    this.sessionId = null;
    this.voice = null;
    this.userId = null; // who is talking: Eva's memories belong to this id
    this.greet = false; // a new session starts with Eva greeting someone she knows
    this.retryDelay = FIRST_RETRY_S;
    this.retryAfter = null; // seconds, from a "busy" refusal: reconnect no sooner
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.reconnects = 0;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams();
    if (this.sessionId) query.set("session_id", this.sessionId);
    if (this.voice) query.set("voice", this.voice);
    const key = storedKey();
    if (key) query.set("token", key);
    if (this.userId) query.set("user_id", this.userId);
    if (this.greet && !this.sessionId) query.set("greet", "true");
    const suffix = query.toString() ? `?${query}` : "";
    return `${scheme}//${location.host}/ws${suffix}`;
  }

  connect() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url());
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => this.handlers.onOpen();
    socket.onmessage = (message) => this.received(message.data);
    // onerror is always followed by onclose, which is where we recover.
    socket.onclose = (event) => this.closed(socket, event);
  }

  received(data) {
    if (data instanceof ArrayBuffer) {
      this.handlers.onAudio(data);
      return;
    }
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      console.warn("eva: ignoring a frame that is not JSON", data);
      return;
    }
    if (event.type === "session.created") {
      this.sessionId = event.session_id;
      this.retryDelay = FIRST_RETRY_S; // a real session: the link is healthy again
      this.startPinging();
    }
    if (event.type === "pong") clearTimeout(this.pongTimer);
    if (event.type === "error" && event.code === "busy") this.retryAfter = event.retry_after_s;
    this.handlers.onEvent(event);
  }

  closed(socket, event) {
    if (socket !== this.socket) return; // an old socket we already replaced
    this.socket = null;
    this.stopPinging();
    if (event.code === CLOSE_UNAUTHORIZED) {
      // Retrying with the same key cannot help: the page asks for a key, then reconnects.
      this.handlers.onDown(null, event.code);
      return;
    }
    if (event.code === CLOSE_UNKNOWN_SESSION) {
      this.sessionId = null;
      this.retryDelay = 0; // nothing is wrong with the server: come straight back
    }
    if (event.code === CLOSE_TRY_AGAIN_LATER && this.retryAfter) {
      this.retryDelay = Math.max(this.retryDelay, this.retryAfter); // as long as Eva asked
    }
    this.retryAfter = null;
    const delay = this.retryDelay * (0.8 + 0.4 * Math.random()); // jitter: no thundering herd
    this.retryDelay = Math.min(Math.max(this.retryDelay * 2, FIRST_RETRY_S), MAX_RETRY_S);
    this.reconnects += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay * 1000);
    this.handlers.onDown(delay, event.code);
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(event) {
    if (!this.open) return false;
    this.socket.send(JSON.stringify(event));
    return true;
  }

  sendAudio(pcm) {
    // While reconnecting, audio is dropped rather than queued: stale speech is worse than none.
    if (this.open) this.socket.send(pcm);
  }

  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.drop(), PONG_TIMEOUT_S * 1000);
    }, PING_EVERY_S * 1000);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  // Closes the current socket; the reconnect logic in closed() takes it from there.
  drop() {
    if (this.socket) this.socket.close();
  }
}
