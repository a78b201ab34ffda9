// Types of examples/web/kiln.js, the JavaScript API of kiln in the browser.

export interface LoadProgress {
  /** The file being loaded. */
  file: string;
  /** Bytes of its tensor data uploaded so far, and in all. */
  loaded: number;
  total: number;
  /** Whether the file is read from the browser cache (a model loaded from that URL before)
   *  rather than downloaded. */
  cached: boolean;
}

/** The Cache API cache that files of models loaded from a URL are kept in ("kiln-models-v2"). */
export const CACHE_NAME: string;

export interface CachedModel {
  /** The model's base URL, absolute and ending in "/". */
  url: string;
  /** Its files in the cache, by their path in the model folder ("1_Pooling/config.json"). */
  files: string[];
  /** Their size in bytes, from the stored Content-Length headers. */
  bytes: number;
}

/** The models with files in the browser cache. A model is cached whole, by a load that
 *  succeeded: a failed load, or one whose files could not all be stored, leaves none of its
 *  files there. Empty where the page has no Cache API (an insecure origin). */
export function cachedModels(): Promise<CachedModel[]>;
/** Whether the model at this base URL (relative to the page, as load() takes it) is cached. */
export function isCached(url: string): Promise<boolean>;
/** Deletes every cached model file; resolves to whether there was a cache to delete. Loaded
 *  models keep working; the next load of one downloads it again. */
export function clearCache(): Promise<boolean>;

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 is greedy. Default 0.8. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  /** The same seed, prompt and options give the same text. Defaults to the clock. */
  seed?: number;
  /** Text that ends generation when produced (not shown). */
  stop?: string[];
  /** Render the prompt as the user's turn with the model's chat template. */
  chat?: boolean;
  system?: string;
  /** Earlier turns of the conversation, for chat. */
  messages?: { role: string; content: string }[];
  /** KV-cache positions of the default session (KilnModel.generate only). */
  context?: number;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  firstTokenMs: number;
  prefillTokensPerSec: number;
  decodeTokensPerSec: number;
  finish?: 'Eos' | 'Stop' | 'MaxTokens' | 'Context' | 'Cancelled';
}

export function hasWebGPU(): boolean;
/** Why WebGPU cannot be used here (no navigator.gpu, or no adapter), or null if it can. */
export function webgpuAdapter(): Promise<string | null>;

/** Loads the model a folder's config.json describes: a text generator (kind "generate"), an
 *  embedding model ("embed") or Whisper ("transcribe"). Errors are thrown as Error with a
 *  message naming the problem (no WebGPU, a bad file...). From a URL, each file is read from
 *  the browser cache (CACHE_NAME) if it is there, else downloaded and stored there as it
 *  streams in; caching never fails a load (no Cache API, or no room: a console warning, and
 *  the files come from the network). */
export function load(
  source: string | FileList | File[],
  options?: {
    onProgress?: (p: LoadProgress) => void;
    /** Embedding models: force L2 normalisation on or off; unset, modules.json decides. */
    normalize?: boolean;
    /** Read a URL's files from the browser cache and keep downloaded ones there. Default true. */
    cache?: boolean;
  },
): Promise<KilnModel | KilnEmbedder | KilnTranscriber>;

export interface AdapterInfo {
  /** A readable name: the browser's description, or vendor and architecture. */
  name: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** "Cpu" for a software (fallback) adapter. */
  deviceType: string;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  shaderF16: boolean;
}

/** What every loaded model has. The methods of another kind throw an Error saying what the
 *  model is. */
declare class Loaded {
  readonly kind: 'generate' | 'embed' | 'transcribe';
  /** The one adapter the model runs on: WebGPU gives a page one adapter at a time, so a
   * model is never split across adapters in the browser (the native library does that). */
  readonly adapter: AdapterInfo;
}

export class KilnEmbedder extends Loaded {
  readonly kind: 'embed';
  readonly width: number;
  /** Longer inputs are truncated (with a console warning). */
  readonly maxTokens: number;
  readonly normalizes: boolean;
  /** One embedding per text, in order; batched by length, padding masked, mean-pooled. */
  embed(
    texts: string[],
    options?: { batch?: number; onProgress?: (done: number, total: number) => void },
  ): Promise<Float32Array[]>;
}

export interface Transcript {
  text: string;
  /** Without timestamps, one segment per 30-second window. */
  segments: { start: number; end: number; text: string }[];
  /** Seconds of audio. */
  seconds: number;
  windows: number;
  encodeMs: number;
  decodeMs: number;
  /** Decoder steps. */
  steps: number;
}

export class KilnTranscriber extends Loaded {
  readonly kind: 'transcribe';
  /** A WAV file: PCM 16/24/32-bit or float, mono or stereo, any rate. */
  transcribe(
    wav: ArrayBuffer | Uint8Array | Blob,
    options?: { language?: string; timestamps?: boolean; onText?: (text: string) => void },
  ): Promise<Transcript>;
}

export class KilnModel extends Loaded {
  readonly kind: 'generate';
  readonly hasChatTemplate: boolean;
  /** Why the GPU device was lost (generations then fail with "GPU device lost"), or null
   *  while it works. Load the model again to go on. */
  readonly lost: string | null;
  /** For testing: lose the GPU device at kiln's `submissions`-th next submission. */
  injectDeviceLoss(submissions: number): void;
  readonly stats: GenerationStats | undefined;
  session(context?: number): Promise<KilnSession>;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, void, void>;
  cancel(): void;
}

export class KilnSession {
  readonly stats: GenerationStats | undefined;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, void, void>;
  cancel(): void;
  reset(): void;
}

export interface BenchmarkOptions {
  /** "kernels" (default): rooflines, then kernels at the sweep presets' shapes; "model": a
   *  synthetic model measured as `kiln bench --model` measures one. */
  mode?: 'kernels' | 'model';
  /** Comma-separated presets whose shapes the kernels are swept at, or "none" (rooflines
   *  only). Default "smollm2-135m". */
  sweep?: string;
  /** Comma-separated weight formats for the sweep. Default: every one. */
  dtypes?: string;
  /** The synthetic model's preset (mode "model"). Default "smollm2-135m". */
  model?: string;
  /** Its matrices' format. Default F16. */
  dtype?: string;
  /** Prompt tokens, generated tokens and measured runs (llama-bench's -p, -n, -r).
   *  Defaults 512, 128, 5. */
  prompt?: number;
  tokens?: number;
  runs?: number;
  /** Profile one extra decode and prefill step by kernel (GPU time, where the adapter has
   *  timestamp queries), as `kiln bench --profile` does. Default false. */
  profile?: boolean;
}

/** Run the benchmark suite on this page's adapter; resolves to its results' JSON
 *  (schema kiln-bench/1, docs/bench-json.md). */
export function benchmark(options?: BenchmarkOptions, hooks?: { onLog?: (line: string) => void }): Promise<string>;

/** The markdown tables `kiln bench` prints, from benchmark results' JSON. */
export function benchmarkTable(json: string): Promise<string>;
