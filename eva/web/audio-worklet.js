// Microphone capture, on the audio rendering thread.
//
// The browser hands us Float32 blocks of 128 samples at the AudioContext's rate (often
// 48 kHz). Eva wants PCM16 mono at 16 kHz, so this processor low-pass filters, resamples by
// linear interpolation, converts to Int16 and posts frames of FRAME_SAMPLES to the main
// thread, which sends each one as a binary WebSocket frame. All state (filter history,
// fractional read position, the frame being filled) carries across blocks, so block edges
// leave no clicks or gaps.

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz: small enough for quick voice detection

// Designs a windowed-sinc low-pass filter that removes what 16 kHz cannot represent
// (above 8 kHz) before we drop samples; without it, hiss and sibilants fold back as noise.
function lowPassTaps(inRate, outRate) {
  const ratio = inRate / outRate;
  const count = 2 * Math.ceil(8 * ratio) + 1; // longer for bigger ratios: same steepness
  const cutoff = (0.5 / ratio) * 0.9; // in cycles per input sample, 10 % below Nyquist
  const middle = (count - 1) / 2;
  const taps = new Float32Array(count);
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const hamming = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (count - 1));
    taps[i] = sinc * hamming;
    sum += taps[i];
  }
  for (let i = 0; i < count; i++) taps[i] /= sum; // unity gain at 0 Hz
  return taps;
}

// A streaming resampler: feed it blocks of any size, it returns the output samples that
// block completes. Exported shape kept tiny so it is easy to reason about.
class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.taps = inRate > outRate ? lowPassTaps(inRate, outRate) : new Float32Array([1]);
    this.history = new Float32Array(this.taps.length - 1); // last inputs of the previous block
    this.position = 0; // where the next output falls, in input samples from this block's start
    this.previous = 0; // last filtered sample of the previous block (position -1)
  }

  filter(block) {
    const taps = this.taps;
    const keep = this.history.length;
    const joined = new Float32Array(keep + block.length);
    joined.set(this.history);
    joined.set(block, keep);
    const out = new Float32Array(block.length);
    for (let n = 0; n < block.length; n++) {
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc += taps[k] * joined[n + keep - k];
      out[n] = acc;
    }
    this.history.set(joined.subarray(joined.length - keep));
    return out;
  }

  process(block) {
    const filtered = this.filter(block);
    const last = filtered.length - 1;
    const out = [];
    // Interpolate between the two filtered samples around each output position; position
    // -1 is the previous block's last sample, so the seam between blocks is continuous.
    while (this.position < last) {
      const index = Math.floor(this.position);
      const fraction = this.position - index;
      const a = index < 0 ? this.previous : filtered[index];
      const b = filtered[index + 1];
      out.push(a + (b - a) * fraction);
      this.position += this.step;
    }
    this.position -= filtered.length;
    this.previous = filtered[last];
    return out;
  }
}

class MicrophoneProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.resampler = new Resampler(sampleRate, TARGET_RATE);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.sumOfSquares = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      // The track is mono (channelCount: 1); if a device gives more, the first is enough.
      for (const sample of this.resampler.process(channels[0])) this.push(sample);
    }
    return true; // keep running while the node is connected
  }

  push(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    this.sumOfSquares += clipped * clipped;
    if (this.filled === FRAME_SAMPLES) {
      const level = Math.sqrt(this.sumOfSquares / FRAME_SAMPLES);
      // Transfer, don't copy: the buffer changes hands and we start a fresh one.
      this.port.postMessage({ pcm: this.frame.buffer, level }, [this.frame.buffer]);
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.filled = 0;
      this.sumOfSquares = 0;
    }
  }
}

registerProcessor("eva-microphone", MicrophoneProcessor);
