// kiln in the browser: load a model onto the GPU, then generate text as an async iterator.
//
//   import { load } from './kiln.js';
//   const model = await load('model/', { onProgress: p => console.log(p.file, p.loaded, p.total) });
//   for await (const text of model.generate('The capital of France is', { maxTokens: 12, temperature: 0 }))
//     output.textContent += text;
//
// The model, scheduler, kernels and host loop are kiln's own, compiled to wasm32; weights
// stream from the network or the picked files straight into GPU buffers.
import init, { Model, benchmark as runBenchmark, benchMarkdown } from './pkg/kiln_web.js';

let booted;

/** Whether this browser exposes WebGPU at all. */
export function hasWebGPU() {
  return typeof navigator !== 'undefined' && !!navigator.gpu;
}

/** Why WebGPU cannot be used here, or null if an adapter is available. */
export async function webgpuAdapter() {
  if (!hasWebGPU()) {
    return 'This browser does not expose WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge, or enable WebGPU in its settings.';
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) {
    return 'This browser supports WebGPU but offers no GPU adapter: WebGPU may be disabled, or this GPU blocklisted. Try enabling WebGPU (chrome://flags/#enable-unsafe-webgpu) or another browser.';
  }
  return null;
}

/**
 * Load a model from a base URL (serving config.json, tokenizer.json, tokenizer_config.json and
 * model.safetensors or a sharded index) or from user-picked files (a FileList or File[]).
 */
export async function load(source, { onProgress } = {}) {
  if (!hasWebGPU()) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU.');
  }
  booted ??= init();
  await booted;
  const model = typeof source === 'string'
    ? await Model.fromUrl(source, onProgress ?? null)
    : await Model.fromFiles([...source], onProgress ?? null);
  return new KilnModel(model);
}

/**
 * Run kiln's benchmark suite on this page's WebGPU adapter (see BenchmarkOptions in
 * kiln.d.ts); resolves to the results as JSON, in the schema `kiln bench --json` writes
 * natively (docs/bench-json.md), so a browser run compares with a native one through
 * `kiln bench --compare`.
 */
export async function benchmark(options = {}, { onLog } = {}) {
  if (!hasWebGPU()) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU.');
  }
  booted ??= init();
  await booted;
  return runBenchmark(options, onLog ?? null);
}

/** The markdown tables `kiln bench` prints, from benchmark results' JSON. */
export async function benchmarkTable(json) {
  booted ??= init();
  await booted;
  return benchMarkdown(json);
}

export class KilnModel {
  #model;
  #session = null;
  #context = undefined;

  constructor(model) {
    this.#model = model;
  }

  /** The adapter the model runs on: { name, vendor, architecture, device, description,
   *  deviceType, maxBufferSize, maxStorageBufferBindingSize, shaderF16 }. */
  get adapter() {
    return this.#model.adapter;
  }

  get hasChatTemplate() {
    return this.#model.hasChatTemplate;
  }

  /** A separate conversation with its own KV cache of `context` positions. */
  async session(context) {
    return new KilnSession(await this.#model.session(context ?? null));
  }

  /** Generate on the model's default session; yields text deltas. See KilnSession.generate. */
  async *generate(prompt, options = {}) {
    if (!this.#session || (options.context && options.context !== this.#context)) {
      this.#session = await this.session(options.context);
      this.#context = options.context;
    }
    yield* this.#session.generate(prompt, options);
  }

  /** Stop the default session's generation at the next token. */
  cancel() {
    this.#session?.cancel();
  }

  /** Timings of the last generation on the default session. */
  get stats() {
    return this.#session?.stats;
  }
}

export class KilnSession {
  #session;
  #canceller;
  #busy = false;

  constructor(session) {
    this.#session = session;
    this.#canceller = session.canceller();
  }

  /**
   * Generate after `prompt`, yielding text deltas as they are produced.
   * options: { maxTokens, temperature, topK, topP, minP, repeatPenalty, seed, stop: string[],
   *            chat: boolean, system: string, messages: [{ role, content }] }
   */
  async *generate(prompt, options = {}) {
    if (this.#busy) throw new Error('this session is already generating');
    this.#busy = true;
    try {
      await this.#session.start(prompt, options);
      for (;;) {
        const delta = await this.#session.next();
        if (delta === undefined) return;
        yield delta;
      }
    } finally {
      this.#busy = false;
    }
  }

  cancel() {
    this.#canceller.cancel();
  }

  reset() {
    this.#session.reset();
  }

  /** { promptTokens, generatedTokens, firstTokenMs, prefillTokensPerSec, decodeTokensPerSec, finish } */
  get stats() {
    return this.#busy ? undefined : this.#session.stats();
  }
}
