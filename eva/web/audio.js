// Audio in and out of the page: Eva's voice (Player) and the person's microphone
// (Microphone). Both live on one AudioContext, created on the first user gesture because
// browsers keep audio silent until the person has interacted with the page.

// Playback starts this long after the first chunk of a reply arrives: a small cushion
// against network and scheduling jitter, short enough that nobody hears it as a delay.
const JITTER_BUFFER_S = 0.08;

// How often the level meters are smoothed towards silence (per animation frame).
const LEVEL_DECAY = 0.85;

export class Player {
  constructor(context) {
    this.context = context;
    this.sampleRate = 22050;
    this.output = context.createGain();
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 512;
    this.output.connect(this.analyser);
    this.analyser.connect(context.destination);
    this.samples = new Float32Array(this.analyser.fftSize);
    this.sources = new Set();
    this.nextStartTime = 0;
    this.leftover = null; // an odd trailing byte, should a chunk ever split a sample
    this.onIdle = () => {};
    this.chunksReceived = 0;
    this.secondsScheduled = 0;
    this.secondsPlayed = 0; // what played to its end, not cut by a barge-in
    this.flushes = 0; // barge-ins that actually silenced something
    this.held = null; // while the server holds the reply (response.paused): what is unplayed
  }

  // Schedules one chunk of PCM16 little-endian mono right after the previous one.
  enqueue(data) {
    const pcm = this.takeWholeSamples(new Uint8Array(data));
    this.chunksReceived += 1;
    if (pcm.length === 0) return;
    const buffer = this.context.createBuffer(1, pcm.length, this.sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 0x8000;
    if (this.held) {
      this.held.push({ buffer, offset: 0 });
      return;
    }
    this.schedule(buffer, 0);
  }

  schedule(buffer, offset) {
    const now = this.context.currentTime;
    // After a gap (first chunk, or the buffer ran dry) restart with a fresh cushion;
    // otherwise butt the chunk against the previous one so there are no clicks.
    if (this.nextStartTime < now) this.nextStartTime = now + JITTER_BUFFER_S;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    source.onended = () => this.finished(source);
    source.start(this.nextStartTime, offset);
    source.startsAt = this.nextStartTime - offset; // when its sample 0 would play
    this.sources.add(source);
    this.nextStartTime += buffer.duration - offset;
    this.secondsScheduled += buffer.duration - offset;
  }

  // The person speaks over Eva (response.paused): stop the sound now but keep what has not
  // played yet, including chunks that still arrive, in case it was only "mm-hm".
  hold() {
    if (this.held) return;
    const now = this.context.currentTime;
    const sources = [...this.sources].sort((a, b) => a.startsAt - b.startsAt);
    this.held = [];
    this.sources.clear();
    for (const source of sources) {
      const offset = Math.max(0, now - source.startsAt);
      if (offset < source.buffer.duration) this.held.push({ buffer: source.buffer, offset });
      source.onended = null;
      try {
        source.stop();
      } catch {
        // never started: silent anyway
      }
      source.disconnect();
    }
    this.nextStartTime = 0;
  }

  // It was a backchannel (response.resumed): play on from where Eva was held.
  release() {
    const held = this.held || [];
    this.held = null;
    for (const { buffer, offset } of held) this.schedule(buffer, offset);
    if (this.sources.size === 0) this.onIdle();
  }

  takeWholeSamples(bytes) {
    let joined = bytes;
    if (this.leftover !== null) {
      joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.leftover;
      joined.set(bytes, 1);
      this.leftover = null;
    }
    const whole = joined.length - (joined.length % 2);
    if (whole < joined.length) this.leftover = joined[whole];
    // Copy into an aligned buffer: Int16Array needs an even byte offset, and a DataView
    // per sample would be slow; PCM16 on the wire is little-endian like every browser CPU.
    return new Int16Array(joined.slice(0, whole).buffer);
  }

  finished(source) {
    this.sources.delete(source);
    this.secondsPlayed += source.buffer.duration;
    if (this.sources.size === 0) this.onIdle();
  }

  get playing() {
    return this.sources.size > 0 || this.held !== null;
  }

  // Barge-in: silence everything scheduled, at once, and start the next reply afresh.
  flush() {
    const wasHeld = this.held !== null && this.held.length > 0;
    this.held = null;
    const sources = [...this.sources];
    this.sources.clear();
    for (const source of sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // a source that never started throws on stop() in some browsers; it is silent anyway
      }
      source.disconnect();
    }
    this.nextStartTime = 0;
    this.leftover = null;
    if (sources.length > 0 || wasHeld) {
      this.flushes += 1;
      this.onIdle();
    }
  }

  setSampleRate(rate) {
    if (rate > 0) this.sampleRate = rate;
  }

  // 0..1, the loudness of what Eva is saying right now (for the orb).
  level() {
    return rms(this.analyser, this.samples);
  }
}

function rms(analyser, samples) {
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

// The person's microphone, as 16 kHz PCM16 frames delivered to `onFrame(arrayBuffer)`.
export class Microphone {
  constructor(context) {
    this.context = context;
    this.stream = null;
    this.node = null;
    this.level = 0;
    this.muted = false;
    this.onFrame = () => {};
  }

  // Asks for the microphone; throws the browser's DOMException (NotAllowedError,
  // NotFoundError, ...) or a MicrophoneUnavailable when the page cannot have one at all.
  async open() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MicrophoneUnavailable();
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        channelCount: 1,
      },
    });
    try {
      await this.context.audioWorklet.addModule("/static/audio-worklet.js");
    } catch (error) {
      for (const track of stream.getTracks()) track.stop(); // don't leave the mic light on
      throw error;
    }
    this.stream = stream;
    const source = this.context.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(this.context, "eva-microphone", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
    });
    this.node.port.onmessage = (event) => this.received(event.data);
    source.connect(this.node);
    // The node writes silence; connecting it keeps the graph pulling it in every browser.
    this.node.connect(this.context.destination);
  }

  received({ pcm, level }) {
    if (!this.muted) this.level = Math.max(level * 4, this.level * LEVEL_DECAY); // speech ~0.1
    // Muted frames still go out: a disabled track yields silence, which tells the server
    // the person has stopped speaking instead of leaving a turn hanging open.
    this.onFrame(pcm);
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream ? this.stream.getAudioTracks() : []) track.enabled = !muted;
    if (muted) this.level = 0;
  }

  get isOpen() {
    return this.stream !== null;
  }

  // Called every animation frame: the current level, fading when no frames arrive.
  currentLevel() {
    const now = this.level;
    this.level *= LEVEL_DECAY;
    return Math.min(1, now);
  }
}

export class MicrophoneUnavailable extends Error {
  constructor() {
    super("This page cannot use a microphone (it needs https or localhost).");
    this.name = "MicrophoneUnavailable";
  }
}
