// kiln in the browser: load a model onto the GPU, then generate text as an async iterator,
// embed sentences, or transcribe speech, as the model folder's config.json says.
//
//   import { load } from './kiln.js';
//   const model = await load('model/', { onProgress: p => console.log(p.file, p.loaded, p.total) });
//   for await (const text of model.generate('The capital of France is', { maxTokens: 12, temperature: 0 }))
//     output.textContent += text;
//
//   const minilm = await load('all-MiniLM-L6-v2/');           // model.kind === 'embed'
//   const [a, b] = await minilm.embed(['A cat sat.', 'A kitten sat down.']);
//
//   const whisper = await load('whisper-base/');              // model.kind === 'transcribe'
//   const wav = new Uint8Array(await file.arrayBuffer());
//   const { text } = await whisper.transcribe(wav, { onText: t => output.textContent += t });
//
// The model, scheduler, kernels and host loop are kiln's own, compiled to wasm32; weights
// stream from the network or the picked files straight into GPU buffers. A model loaded from
// a URL is kept in the browser's Cache API (cache CACHE_NAME) as it streams in, so the next
// load reads it from there and downloads nothing: see cachedModels(), isCached(url) and
// clearCache().
import init, { loadUrl, loadFiles, benchmark as runBenchmark, benchMarkdown } from './pkg/kiln_web.js';

let booted;

/** The Cache API cache that files of models loaded from a URL are kept in. A new layout of
 *  what is stored gets a new name, so an old one is never misread. */
export const CACHE_NAME = 'kiln-models-v2';
// The caches of older layouts (v1: a file whole in one entry), deleted by the next load.
const OLD_CACHES = ['kiln-models-v1'];
// The headers of a stored file's index entry (bindings/src/cache.rs): the file's name in its
// model folder ("1_Pooling/config.json", relative to the model's base URL) and its length.
// Its parts are entries of their own, without these headers.
const FILE_HEADER = 'x-kiln-file';
const LENGTH_HEADER = 'x-kiln-length';

/** The browser's CacheStorage, or null where the page has none (an insecure origin). */
function cacheStorage() {
  return typeof caches === 'undefined' ? null : caches;
}

/** A model's base URL as the cache's keys have it: absolute, ending in one '/'. */
function baseUrl(url) {
  const base = typeof location === 'undefined' ? undefined : location.href;
  return new URL(String(url).replace(/\/*$/, '/'), base).href;
}

/**
 * The models whose files are in the browser cache: [{ url (absolute, ending in '/'), files
 * (names in the model folder), bytes }], from the stored responses' headers (no body is
 * read). Empty where the page has no Cache API.
 */
export async function cachedModels() {
  const storage = cacheStorage();
  if (!storage || !(await storage.has(CACHE_NAME).catch(() => false))) return [];
  const cache = await storage.open(CACHE_NAME);
  const models = new Map();
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    // Deleted meanwhile, or one of a file's parts (counted with its index).
    if (!response?.headers.has(LENGTH_HEADER)) continue;
    // The file's path in the model folder says how much of the URL is the base.
    const file = decodeURI(response.headers.get(FILE_HEADER) ?? request.url.split('/').pop());
    const url = new URL(request.url);
    const parts = url.pathname.split('/');
    parts.splice(parts.length - file.split('/').length);
    url.pathname = `${parts.join('/')}/`;
    url.search = '';
    url.hash = '';
    const model = models.get(url.href) ?? { url: url.href, files: [], bytes: 0 };
    model.files.push(file);
    model.bytes += Number(response.headers.get(LENGTH_HEADER)) || 0;
    models.set(url.href, model);
  }
  return [...models.values()];
}

/** Whether the model at base URL `url` (as load() takes it) has its files in the browser cache. */
export async function isCached(url) {
  const base = baseUrl(url);
  return (await cachedModels()).some((m) => m.url === base);
}

/** Delete every cached model file; resolves to whether there was anything to delete. Models
 *  already loaded keep working; the next load of one downloads it again. */
export async function clearCache() {
  const storage = cacheStorage();
  return storage ? storage.delete(CACHE_NAME) : false;
}

/** Deletes the caches of older layouts, which no load reads: their files would otherwise
 *  take up the browser's storage for ever. */
async function dropOldCaches() {
  const storage = cacheStorage();
  if (!storage) return;
  for (const name of OLD_CACHES) {
    if (await storage.delete(name).catch(() => false)) {
      console.info(`kiln: deleted the browser cache ${name}, an older layout of cached models`);
    }
  }
}

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
 * Load a model from a base URL (serving config.json, tokenizer.json and model.safetensors or
 * a sharded index; tokenizer_config.json for a chat template; modules.json and
 * 1_Pooling/config.json for a sentence-transformers model) or from user-picked files (a
 * FileList or File[]). Resolves, by the folder's config.json, to a KilnModel (kind
 * 'generate'), a KilnEmbedder ('embed') or a KilnTranscriber ('transcribe').
 * options: { onProgress({file, loaded, total, cached}), normalize (embedding models: force L2
 * normalisation on or off; unset, the folder's modules.json decides), cache (default true:
 * read a URL's files from the browser cache, and keep the ones downloaded there; a page
 * without the Cache API, or a full cache, loads from the network with a console warning) }.
 */
export async function load(source, { onProgress, normalize, cache = true } = {}) {
  if (!hasWebGPU()) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU.');
  }
  booted ??= init();
  await booted;
  await dropOldCaches();
  // Without the Cache API the bindings warn, once, and load from the network.
  const options = { normalize, cache: cache ? CACHE_NAME : undefined };
  const model = typeof source === 'string'
    ? await loadUrl(source, onProgress ?? null, options)
    : await loadFiles([...source], onProgress ?? null, options);
  switch (model.kind) {
    case 'embed': return new KilnEmbedder(model);
    case 'transcribe': return new KilnTranscriber(model);
    default: return new KilnModel(model);
  }
}

/** What every loaded model answers; a method its kind lacks throws an error saying so. */
class Loaded {
  #model;

  constructor(model) {
    this.#model = model;
  }

  /** 'generate', 'embed' or 'transcribe'. */
  get kind() {
    return this.#model.kind;
  }

  /** The adapter the model runs on: { name, vendor, architecture, device, description,
   *  deviceType, maxBufferSize, maxStorageBufferBindingSize, shaderF16 }. */
  get adapter() {
    return this.#model.adapter;
  }

  #wrong(what) {
    const does = { generate: 'a text generator', embed: 'an embedding model', transcribe: 'a speech model' };
    return new Error(`${what}() needs ${does[what]}; this one is ${does[this.kind]}`);
  }

  // eslint-disable-next-line require-yield
  async *generate() { throw this.#wrong('generate'); }
  async embed() { throw this.#wrong('embed'); }
  async transcribe() { throw this.#wrong('transcribe'); }
}

/** A sentence-embedding model (BERT with mean pooling, e.g. all-MiniLM-L6-v2). */
export class KilnEmbedder extends Loaded {
  #model;
  #busy = false;

  constructor(model) {
    super(model);
    this.#model = model;
  }

  /** Width of each embedding. */
  get width() { return this.#model.width; }
  /** The most tokens an input keeps (special tokens included); longer ones are truncated. */
  get maxTokens() { return this.#model.maxTokens; }
  /** Whether embeddings come L2-normalised. */
  get normalizes() { return this.#model.normalizes; }

  /**
   * One Float32Array per text, in order. options: { batch (default 32), onProgress(done, total) }.
   * An input over maxTokens is truncated, with a console warning naming it.
   */
  async embed(texts, { batch, onProgress } = {}) {
    if (!Array.isArray(texts)) throw new Error('embed() takes an array of strings');
    if (this.#busy) throw new Error('this model is already embedding');
    this.#busy = true;
    try {
      return await this.#model.embed(texts.map(String), batch ?? null, onProgress ?? null);
    } finally {
      this.#busy = false;
    }
  }
}

/** Whisper: speech to text. */
export class KilnTranscriber extends Loaded {
  #model;
  #busy = false;

  constructor(model) {
    super(model);
    this.#model = model;
  }

  /**
   * Transcribe a WAV file (its bytes as an ArrayBuffer or Uint8Array, or a File/Blob): PCM of
   * 16, 24 or 32 bits or float, mono or stereo, any rate; 30 seconds at a time.
   * options: { language ('en'), timestamps (false), onText(text) as it decodes }.
   * Resolves to { text, segments: [{ start, end, text }], seconds, windows, encodeMs,
   * decodeMs, steps }.
   */
  async transcribe(wav, { language, timestamps, onText } = {}) {
    if (this.#busy) throw new Error('this model is already transcribing');
    this.#busy = true;
    try {
      const bytes = wav instanceof Blob ? new Uint8Array(await wav.arrayBuffer())
        : wav instanceof ArrayBuffer ? new Uint8Array(wav) : wav;
      if (!(bytes instanceof Uint8Array)) throw new Error('transcribe() takes a WAV file\'s bytes or a File');
      return await this.#model.transcribe(bytes, { language, timestamps }, onText ?? null);
    } finally {
      this.#busy = false;
    }
  }
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

/** A text generator (the Llama family). */
export class KilnModel extends Loaded {
  #model;
  #session = null;
  #context = undefined;

  constructor(model) {
    super(model);
    this.#model = model;
  }

  get hasChatTemplate() {
    return this.#model.hasChatTemplate;
  }

  /** Why the GPU device was lost (every generation then fails with "GPU device lost"), or
   *  null while it works. Load the model again to go on. */
  get lost() {
    return this.#model.lost ?? null;
  }

  /** For testing: lose the GPU device at kiln's `submissions`-th next submission. */
  injectDeviceLoss(submissions) {
    this.#model.injectDeviceLoss(submissions);
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
