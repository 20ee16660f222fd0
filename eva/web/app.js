// Eva in the browser: the page's behaviour. The WebSocket protocol is in docs/protocol.md;
// audio.js holds the microphone and the player, connection.js the self-healing socket.

import { CLOSE_UNAUTHORIZED, apiFetch, ensureKey } from "./access.js";
import { Microphone, MicrophoneUnavailable, Player } from "./audio.js";
import { Connection } from "./connection.js";
import { MemoryPanel } from "./memories.js";

const TOAST_S = 6; // long enough to read a sentence, short enough not to linger
const VOICES_RETRY_S = 1; // /voices answers 503 while the models are still loading
const STORE = {
  session: "eva.session_id",
  voice: "eva.voice",
  mode: "eva.mode",
  user: "eva.user_id",
};
// How long after a reply the memory panel looks again: the server stores what it learned
// from the turn just after the reply's last event.
const MEMORY_REFRESH_MS = 400;

const LABELS = {
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  idle: "Ready",
  listening: "Listening",
  waiting: "Ready",
  muted: "Microphone off",
  hearing: "Hearing you…",
  thinking: "Thinking…",
  speaking: "Speaking",
};

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  orb: $("orb"),
  state: $("state"),
  hint: $("hint"),
  start: $("start"),
  talk: $("talk"),
  mute: $("mute"),
  stop: $("stop"),
  notice: $("notice"),
  toast: $("toast"),
  transcript: $("transcript"),
  compose: $("compose"),
  message: $("message"),
  voice: $("voice"),
  modes: [...document.querySelectorAll('input[name="mode"]')],
};

// Everything the page knows, in one place; the orb and labels are derived from it.
const app = {
  context: null, // AudioContext, created on the first gesture
  player: null,
  microphone: null,
  outputRate: 22050,
  everConnected: false,
  historyLoaded: false,
  mode: sessionStorage.getItem(STORE.mode) || "hands_free",
  personSpeaking: false, // between speech.started and speech.stopped
  holding: false, // push-to-talk button or space bar held
  awaitingReply: false, // the person's turn ended; Eva has not answered yet
  responding: false, // between response.created and response.done
  backchannel: false, // Eva's "mm-hm" is playing (heard, not shown)
  held: false, // between response.paused and response.resumed/cancelled (see docs/protocol.md)
  // After a barge-in, audio of the stopped reply may still be on the wire; it is dropped
  // until the next response.created, which the server sends before any reply's audio.
  dropAudio: false,
  audioChunksDropped: 0,
  youLine: null, // the person's line being transcribed (partials)
  evaLine: null, // Eva's line being written (deltas)
  toastTimer: null,
  level: 0,
  micFramesSent: 0,
};

const connection = new Connection({
  onOpen: () => {},
  onEvent: handleEvent,
  onAudio: handleAudio,
  onDown: handleDisconnect,
});
connection.sessionId = sessionStorage.getItem(STORE.session);
connection.voice = sessionStorage.getItem(STORE.voice);
connection.userId = userId();
connection.greet = true;
const memories = new MemoryPanel(connection.userId, forgotEverything);

// A random id kept in this browser: without accounts, it is who Eva remembers.
function userId() {
  let id = localStorage.getItem(STORE.user);
  if (!id) {
    id = crypto.randomUUID ? crypto.randomUUID() : [...crypto.getRandomValues(new Uint8Array(16))]
      .map((byte) => byte.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(STORE.user, id);
  }
  return id;
}

// Everything about this person is gone from the server, this conversation included.
function forgotEverything() {
  sessionStorage.removeItem(STORE.session);
  connection.sessionId = null;
  connection.greet = false;
  ui.transcript.replaceChildren();
  connection.drop(); // comes back with a new, empty session
}

// A read-only window onto the page for tests and curious people; it controls nothing.
Object.defineProperty(window, "evaDebug", {
  get: () =>
    Object.freeze({
      state: ui.body.dataset.state,
      sessionId: connection.sessionId,
      connected: connection.open,
      reconnects: connection.reconnects,
      mode: app.mode,
      audioChunksReceived: app.player ? app.player.chunksReceived : 0,
      audioSecondsScheduled: app.player ? app.player.secondsScheduled : 0,
      audioSecondsPlayed: app.player ? app.player.secondsPlayed : 0,
      audioFlushes: app.player ? app.player.flushes : 0,
      audioChunksDropped: app.audioChunksDropped,
      micFramesSent: app.micFramesSent,
      audioContextState: app.context ? app.context.state : "none",
    }),
});

// ---------------------------------------------------------------------------- state

function currentState() {
  if (!connection.open) return app.everConnected ? "reconnecting" : "connecting";
  if (app.player && app.player.playing && !app.held) return "speaking";
  if (app.holding || app.personSpeaking) return "hearing";
  if (app.responding || app.awaitingReply) return "thinking";
  if (!app.microphone || !app.microphone.isOpen) return "idle";
  if (app.microphone.muted) return "muted";
  return app.mode === "push_to_talk" ? "waiting" : "listening";
}

function refresh() {
  const state = currentState();
  if (ui.body.dataset.state !== state) {
    ui.body.dataset.state = state;
    ui.state.textContent = LABELS[state];
  }
  ui.body.dataset.mode = app.mode;
  const micOpen = app.microphone !== null && app.microphone.isOpen;
  ui.start.hidden = micOpen;
  ui.mute.hidden = !micOpen;
  ui.talk.hidden = !micOpen || app.mode !== "push_to_talk";
  ui.stop.disabled = !evaIsBusy();
  const hint = hintFor(state, micOpen);
  if (ui.hint.textContent !== hint) ui.hint.textContent = hint;
}

function hintFor(state, micOpen) {
  if (!micOpen) return state === "idle" ? "Press Start to talk, or type below." : "";
  if (app.mode === "push_to_talk" && state === "waiting") {
    return "Hold the button or the space bar while you speak.";
  }
  if (state === "listening") return "Just talk. You can interrupt Eva at any time.";
  return "";
}

// ------------------------------------------------------------------------ server events

function handleEvent(event) {
  switch (event.type) {
    case "session.created":
      sessionCreated(event);
      break;
    case "session.updated":
      applySettings(event);
      break;
    case "speech.started":
      app.personSpeaking = true;
      app.awaitingReply = false;
      // The person talks over Eva: she stops at once. A reply the server holds (sent
      // response.paused just before) is kept, in case this is only "mm-hm".
      if (!app.held) bargeIn();
      break;
    case "response.paused":
      app.held = true;
      if (app.player) app.player.hold();
      break;
    case "response.resumed":
      app.held = false;
      if (app.player) app.player.release();
      break;
    case "response.cancelled":
      app.held = false;
      bargeIn();
      break;
    case "speech.stopped":
      app.personSpeaking = false;
      break;
    case "transcript.partial":
      yourLine().setText(event.text, true);
      break;
    case "transcript.final":
      finishYourLine(event.text);
      break;
    case "response.created":
      app.dropAudio = false;
      // Eva's "mm-hm" while you talk is heard, not written: it is no reply.
      app.backchannel = event.purpose === "backchannel";
      if (app.backchannel) break;
      app.responding = true;
      app.awaitingReply = false;
      evaLine();
      break;
    case "response.text.delta":
      if (!app.backchannel) evaLine().append(event.text);
      break;
    case "response.done":
      if (event.purpose === "backchannel") {
        app.backchannel = false;
        if (event.interrupted) bargeIn();
        break;
      }
      responseDone(event);
      break;
    case "error":
      serverError(event);
      break;
    case "pong":
      break;
    default:
      // Unknown events are fine: a newer server may say more than this page understands.
      break;
  }
  refresh();
}

function sessionCreated(event) {
  app.everConnected = true;
  sessionStorage.setItem(STORE.session, event.session_id);
  applySettings(event);
  if (event.mode && event.mode !== app.mode) connection.send({ type: "session.update", mode: app.mode });
  if (!app.historyLoaded) {
    app.historyLoaded = true;
    loadHistory(event.session_id);
  }
}

function applySettings(event) {
  if (event.output_audio && event.output_audio.sample_rate) {
    app.outputRate = event.output_audio.sample_rate;
    if (app.player) app.player.setSampleRate(app.outputRate);
  }
  if (event.voice) {
    ensureVoiceOption(event.voice);
    ui.voice.value = event.voice;
  }
  if (event.mode && event.type === "session.updated") setMode(event.mode, false);
}

function responseDone(event) {
  const line = evaLine();
  if (typeof event.text === "string" && (event.text || event.interrupted)) {
    line.setText(event.text || "…");
  }
  line.finish(event.timings || {}, Boolean(event.interrupted));
  app.evaLine = null;
  app.responding = false;
  app.awaitingReply = false;
  if (event.interrupted) bargeIn();
  setTimeout(() => memories.refresh(), MEMORY_REFRESH_MS);
}

function serverError(event) {
  app.awaitingReply = false;
  if (event.code === "unknown_session") {
    // The server closes next; the connection starts a new conversation by itself.
    sessionStorage.removeItem(STORE.session);
    showToast("That conversation is no longer there, so a new one begins.");
    return;
  }
  if (event.code === "busy") {
    // Said kindly: nothing is wrong with the person or their words.
    const wait = Math.max(1, Math.round(event.retry_after_s || 1));
    const when = wait === 1 ? "a second" : `${wait} seconds`;
    showToast(`Eva is talking with a lot of people right now. Please try again in ${when}.`);
    return;
  }
  if (event.code === "unknown_voice") {
    sessionStorage.removeItem(STORE.voice);
    connection.voice = null;
  }
  showToast(event.message || "Something went wrong.");
}

function handleAudio(data) {
  if (!app.player) return; // no gesture yet, so no audio: the reply still shows as text
  if (app.dropAudio) {
    app.audioChunksDropped += 1;
    return;
  }
  app.player.enqueue(data);
  refresh();
}

function handleDisconnect(retryInSeconds, closeCode) {
  if (closeCode === CLOSE_UNAUTHORIZED) {
    // A pause before reconnecting, in case the key is fine and the refusal was not its fault.
    ensureKey("Your key is no longer accepted. Enter a valid API key.").then(() =>
      setTimeout(() => connection.connect(), 1000),
    );
  }
  app.held = false;
  if (app.player) app.player.flush();
  app.personSpeaking = false;
  app.awaitingReply = false;
  app.responding = false;
  if (app.youLine) app.youLine.cut();
  if (app.evaLine) app.evaLine.cut();
  app.youLine = null;
  app.evaLine = null;
  refresh();
}

// Eva stops talking now: what is scheduled is silenced, and what is still on its way from
// the stopped reply is dropped.
function bargeIn() {
  app.held = false;
  if (app.responding || (app.player && app.player.playing)) app.dropAudio = true;
  if (app.player && app.player.playing) app.player.flush();
}

// ------------------------------------------------------------------------------ transcript

// One line of the conversation: who said it, the words, and for Eva a latency figure.
function addLine(who) {
  const item = document.createElement("li");
  item.className = `turn ${who}`;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who === "you" ? "You" : "Eva";
  const text = document.createElement("p");
  text.className = "text";
  item.append(name, text);
  ui.transcript.append(item);
  const line = {
    item,
    setText(words, partial = false) {
      text.textContent = words;
      text.classList.toggle("partial", partial);
      scrollToEnd();
    },
    append(words) {
      text.textContent += words;
      scrollToEnd();
    },
    finish(timings, interrupted) {
      item.classList.toggle("interrupted", interrupted);
      const ms = timings.voice_to_voice_ms ?? timings.first_audio_ms;
      if (typeof ms === "number") item.append(latencyBadge(ms, "voice_to_voice_ms" in timings));
    },
    cut() {
      if (!text.textContent) item.remove();
      else item.classList.add("cut");
      text.classList.remove("partial");
    },
  };
  scrollToEnd();
  return line;
}

function latencyBadge(ms, spoken) {
  const badge = document.createElement("span");
  badge.className = "latency";
  badge.textContent = `${Math.round(ms)} ms`;
  badge.title = spoken
    ? "From the end of your words to Eva's first sound"
    : "From your message to Eva's first sound";
  return badge;
}

function yourLine() {
  if (!app.youLine) app.youLine = addLine("you");
  return app.youLine;
}

function finishYourLine(text) {
  const line = app.youLine;
  app.youLine = null;
  if (!text || !text.trim()) {
    if (line) line.item.remove(); // noise that turned out to be nothing
    return;
  }
  (line || addLine("you")).setText(text);
  app.awaitingReply = true;
}

function evaLine() {
  if (!app.evaLine) app.evaLine = addLine("eva");
  return app.evaLine;
}

function scrollToEnd() {
  const box = ui.transcript.parentElement;
  box.scrollTop = box.scrollHeight;
}

// After a reload the session resumes on the server; show what was already said.
async function loadHistory(sessionId) {
  if (ui.transcript.children.length > 0) return;
  let body;
  try {
    const query = `user_id=${encodeURIComponent(connection.userId)}`;
    const response = await apiFetch(`/sessions/${encodeURIComponent(sessionId)}/messages?${query}`);
    if (!response.ok) return; // a brand-new session has nothing stored yet
    body = await response.json();
  } catch {
    return;
  }
  const first = ui.transcript.firstChild;
  for (const message of body.messages || []) {
    const line = addLine(message.role === "user" ? "you" : "eva");
    line.setText(message.content);
    if (message.role !== "user") line.finish(message.timings || {}, message.interrupted);
    ui.transcript.insertBefore(line.item, first); // before anything said meanwhile
  }
  scrollToEnd();
}

// ------------------------------------------------------------------------------ audio

// Creates the AudioContext and the player; must run inside a user gesture to be audible.
function ensureAudio() {
  if (!app.context) {
    app.context = new AudioContext({ latencyHint: "interactive" });
    app.player = new Player(app.context);
    app.player.setSampleRate(app.outputRate);
    app.player.onIdle = refresh;
  }
  if (app.context.state === "suspended") app.context.resume();
  return app.context;
}

async function start() {
  ui.start.disabled = true;
  hideNotice();
  const context = ensureAudio();
  const microphone = new Microphone(context);
  microphone.onFrame = sendMicFrame;
  try {
    await microphone.open();
    app.microphone = microphone;
    const focus = app.mode === "push_to_talk" ? ui.talk : ui.mute;
    refresh();
    focus.focus();
  } catch (error) {
    showNotice(microphoneProblem(error));
    ui.start.textContent = "Try the microphone again";
  } finally {
    ui.start.disabled = false;
    refresh();
  }
}

function sendMicFrame(pcm) {
  if (app.mode === "push_to_talk" && !app.holding) return;
  if (!connection.open) return;
  connection.sendAudio(pcm);
  app.micFramesSent += 1;
}

function microphoneProblem(error) {
  const typing = "You can still type to Eva below.";
  const name = error && error.name;
  if (error instanceof MicrophoneUnavailable) {
    return `This page can't use a microphone here: open Eva on localhost or over https. ${typing}`;
  }
  if (name === "NotAllowedError" || name === "SecurityError") {
    return (
      "Eva can't hear you: microphone access was refused. " +
      `${typing} To talk, allow the microphone for this site in your browser, then press the button again.`
    );
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return `No microphone was found. Plug one in and try again. ${typing}`;
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return `The microphone is busy or not working (another app may be using it). ${typing}`;
  }
  return `The microphone could not be opened (${name || error}). ${typing}`;
}

// --------------------------------------------------------------------------- controls

function setMode(mode, tellServer) {
  if (mode !== "hands_free" && mode !== "push_to_talk") return;
  if (app.holding && mode !== "push_to_talk") releaseTalk();
  app.mode = mode;
  sessionStorage.setItem(STORE.mode, mode);
  for (const input of ui.modes) input.checked = input.value === mode;
  if (tellServer) connection.send({ type: "session.update", mode });
  refresh();
}

function pressTalk() {
  if (app.holding || app.mode !== "push_to_talk" || !app.microphone) return;
  app.holding = true;
  // Pressing to talk means "my turn": Eva stops whatever she was saying or about to say.
  if (evaIsBusy()) stopEva();
  ui.talk.setAttribute("aria-pressed", "true");
  refresh();
}

function releaseTalk() {
  if (!app.holding) return;
  app.holding = false;
  ui.talk.setAttribute("aria-pressed", "false");
  connection.send({ type: "input_audio.commit" });
  refresh();
}

function stopEva() {
  connection.send({ type: "interrupt" });
  bargeIn();
  refresh();
}

function evaIsBusy() {
  return app.responding || app.awaitingReply || (app.player !== null && app.player.playing);
}

function toggleMute() {
  if (!app.microphone) return;
  const muted = !app.microphone.muted;
  app.microphone.setMuted(muted);
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? "Unmute mic" : "Mute mic";
  refresh();
}

function sendTyped(event) {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text) return;
  ensureAudio(); // this submit is a gesture: Eva's spoken reply can play
  if (!connection.send({ type: "text", text })) {
    showToast("Not connected yet — your message is still in the box; try again in a moment.");
    return;
  }
  bargeIn();
  ui.message.value = "";
  app.awaitingReply = true;
  refresh();
}

function changeVoice() {
  const voice = ui.voice.value;
  if (!voice) return;
  connection.voice = voice; // reconnects ask for it too
  sessionStorage.setItem(STORE.voice, voice);
  connection.send({ type: "session.update", voice });
}

// The space bar talks in push-to-talk mode, unless the person is typing or choosing.
function spaceIsForTalking(event) {
  if (event.code !== "Space" || app.mode !== "push_to_talk" || !app.microphone) return false;
  const target = event.target;
  if (target === ui.talk) return true;
  return !target.closest("input, textarea, select, button, [contenteditable]");
}

function onKeyDown(event) {
  if (event.key === "Escape") {
    if (evaIsBusy()) stopEva();
    return;
  }
  if (!spaceIsForTalking(event)) return;
  event.preventDefault();
  if (!event.repeat) pressTalk();
}

function onKeyUp(event) {
  if (!spaceIsForTalking(event)) return;
  event.preventDefault();
  releaseTalk();
}

function wireControls() {
  ui.start.addEventListener("click", start);
  ui.mute.addEventListener("click", toggleMute);
  ui.stop.addEventListener("click", stopEva);
  ui.compose.addEventListener("submit", sendTyped);
  ui.voice.addEventListener("change", changeVoice);
  for (const input of ui.modes) input.addEventListener("change", () => setMode(input.value, true));
  ui.talk.addEventListener("pointerdown", (event) => {
    ui.talk.setPointerCapture(event.pointerId);
    pressTalk();
  });
  for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) {
    ui.talk.addEventListener(name, releaseTalk);
  }
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", releaseTalk); // a held key is lost when the window is
}

// ---------------------------------------------------------------------------- voices

async function loadVoices() {
  let voices;
  try {
    const response = await apiFetch("/voices");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    voices = await response.json();
  } catch {
    setTimeout(loadVoices, VOICES_RETRY_S * 1000); // still loading the models, most likely
    return;
  }
  const chosen = ui.voice.value;
  ui.voice.replaceChildren();
  // Every voice the server has, grouped by language ("en", "fr", ...), in its order.
  const groups = new Map();
  for (const voice of voices) {
    const language = (voice.language || "other").split("-")[0].toLowerCase();
    if (!groups.has(language)) {
      const group = document.createElement("optgroup");
      group.label = languageName(language);
      groups.set(language, group);
      ui.voice.append(group);
    }
    const option = new Option(voiceLabel(voice), voice.id);
    option.dataset.default = String(voice.default);
    groups.get(language).append(option);
  }
  const fallback = voices.find((voice) => voice.default);
  ui.voice.value = chosen || connection.voice || (fallback ? fallback.id : "");
  ui.voice.disabled = false;
}

function languageName(code) {
  try {
    return new Intl.DisplayNames([navigator.language || "en"], { type: "language" }).of(code);
  } catch {
    return code; // an unknown code, or no Intl.DisplayNames: the code itself
  }
}

function voiceLabel(voice) {
  return `${voice.description || voice.id}${voice.default ? " (default)" : ""}`;
}

function ensureVoiceOption(id) {
  if ([...ui.voice.options].some((option) => option.value === id)) return;
  ui.voice.append(new Option(id, id));
}

// ----------------------------------------------------------------------------- notices

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

function showToast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(app.toastTimer);
  app.toastTimer = setTimeout(() => {
    ui.toast.hidden = true;
  }, TOAST_S * 1000);
}

// ------------------------------------------------------------------------------- orb

// Feeds the orb the loudness that matters now: Eva's voice while she speaks, the
// microphone while she listens. CSS turns --level into size and glow.
function animate() {
  const state = ui.body.dataset.state;
  let target = 0;
  if (state === "speaking" && app.player) target = Math.min(1, app.player.level() * 3);
  else if (app.microphone && (state === "hearing" || state === "listening")) {
    target = app.microphone.currentLevel();
  }
  app.level += (target - app.level) * (target > app.level ? 0.5 : 0.15); // quick up, soft down
  ui.orb.style.setProperty("--level", app.level.toFixed(3));
  requestAnimationFrame(animate);
}

// ------------------------------------------------------------------------------ begin

wireControls();
setMode(app.mode, false);
requestAnimationFrame(animate);
ensureKey().then(() => {
  loadVoices();
  memories.refresh();
  connection.connect();
});
