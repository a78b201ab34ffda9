// The demo page: load a model from a URL or a picked/dropped folder, then, by the model's
// kind, stream text (Text tab), see sentences' similarity matrix (Embeddings) or transcribe
// a WAV file (Speech). Each tab keeps its own model. Models loaded from a URL stay in the
// browser's cache (kiln.js keeps them there): a badge says which are, a button clears them.
import { webgpuAdapter, load, cachedModels, clearCache } from './kiln.js';

const $ = (id) => document.getElementById(id);
const models = { generate: null, embed: null, transcribe: null };
// Where each tab's model is served by examples/web/serve.sh.
const defaultUrl = { generate: 'model/', embed: 'embedding/', transcribe: 'whisper/' };
let tab = 'generate';
window.kilnModels = models; // for the console, and for e2e.mjs
let history = []; // chat turns: { role, content }
let cached = []; // the models in the browser cache, as cachedModels() last said

function showTab(kind) {
  if (defaultUrl[tab] === $('url').value) $('url').value = defaultUrl[kind];
  tab = kind;
  for (const b of document.querySelectorAll('#tabs button')) {
    b.setAttribute('aria-selected', String(b.dataset.kind === kind));
  }
  for (const p of document.querySelectorAll('.panel')) p.hidden = p.id !== kind;
  showUrl();
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;

/** A model URL as cachedModels() names it (absolute, ending in '/'), or null if it is not one. */
function absolute(url) {
  try {
    return new URL(url.trim().replace(/\/*$/, '/'), location.href).href;
  } catch {
    return null;
  }
}

/** The picker on the URL field's model (or "Other URL…"), and the "cached" badge if its
 *  files are in the browser cache. */
function showUrl() {
  const url = $('url').value.trim();
  const pick = $('model-pick');
  pick.value = [...pick.options].some((o) => o.value && o.value === url) ? url : '';
  const model = cached.find((m) => m.url === absolute(url));
  $('cached').hidden = !model;
  if (model) $('cached').textContent = `cached, ${mb(model.bytes)}`;
}

/** Reads what the browser cache holds, and shows it: the badge, "(cached)" on the picker's
 *  models, the total and the clear button. */
async function refreshCache() {
  try {
    cached = await cachedModels();
  } catch (e) {
    console.warn(`could not read the browser cache: ${e?.message ?? e}`);
    cached = [];
  }
  for (const o of $('model-pick').options) {
    if (!o.value) continue;
    o.dataset.label ??= o.textContent;
    const hit = cached.some((m) => m.url === absolute(o.value));
    o.textContent = hit ? `${o.dataset.label} (cached)` : o.dataset.label;
  }
  const bytes = cached.reduce((n, m) => n + m.bytes, 0);
  $('cache-info').textContent = cached.length
    ? `${cached.length === 1 ? 'One model' : `${cached.length} models`} (${mb(bytes)}) cached in this browser.`
    : '';
  $('clear-cache').disabled = !cached.length;
  showUrl();
}

/** Plain status text in `el`. */
function status(el, text) {
  el.classList.remove('failed');
  el.textContent = text;
}

/** An error in `el`, in red and in plain words. */
function failure(el, e, prefix = '') {
  el.classList.add('failed');
  el.textContent = `${prefix}${e?.message ?? e}`;
}

function setStatus(text) {
  status($('load-status'), text);
}

async function loadModel(source, label) {
  document.body.dataset.state = 'loading';
  $('load-url').disabled = true;
  $('model-pick').disabled = true;
  $('progress').hidden = false;
  $('progress').value = 0;
  setStatus(`Loading ${label}…`);
  const t0 = performance.now();
  // Whether every weight file so far came from the browser cache (null: none yet).
  let fromCache = null;
  let from = null; // once loaded: 'network', 'cache' or 'files'
  try {
    const model = await load(source, {
      onProgress: ({ file, loaded, total, cached: hit }) => {
        fromCache = (fromCache ?? true) && hit;
        $('progress').value = total ? loaded / total : 0;
        setStatus(`Loading ${file}${hit ? ' from cache' : ''}: ${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`);
      },
    });
    const secs = (performance.now() - t0) / 1000;
    from = typeof source !== 'string' ? 'files' : fromCache ? 'cache' : 'network';
    $('progress').value = 1;
    setStatus(`Loaded ${label}${from === 'cache' ? ' from cache' : ''} in ${secs.toFixed(1)} s.`);
    document.body.dataset.loadSeconds = secs.toFixed(2);
    document.body.dataset.loadedFrom = from;
    $('adapter').textContent = `GPU: ${model.adapter.name} (${model.adapter.deviceType === 'Cpu' ? 'software' : 'hardware'}, shader-f16 ${model.adapter.shaderF16 ? 'yes' : 'no'}). `
    + 'A page gets one adapter from WebGPU, so the model runs whole on it: splitting a model '
    + 'across adapters is for the native library and CLI.';
    models[model.kind] = model;
    showTab(model.kind);
    $(model.kind).classList.remove('disabled');
    if (model.kind === 'generate') {
      $('run').disabled = false;
      $('chat').checked = model.hasChatTemplate && $('chat').checked;
      history = [];
      $('transcript').textContent = ''; // the new model knows nothing of the old turns
    } else if (model.kind === 'embed') {
      $('embed-run').disabled = false;
    } else {
      $('transcribe-run').disabled = !$('wav').files.length;
    }
    document.body.dataset.kind = model.kind;
    document.body.dataset.state = 'loaded';
  } catch (e) {
    failure($('load-status'), e, `Could not load ${label}: `);
    document.body.dataset.state = 'error';
  } finally {
    $('load-url').disabled = false;
    $('model-pick').disabled = false;
    // A load from a URL adds its model to the cache (or, failing, takes it out).
    if (typeof source === 'string') {
      await refreshCache();
      // Downloaded but not kept (storage full, or refused): say so where the user looks.
      if (from === 'network' && !cached.some((m) => m.url === absolute(source))) {
        setStatus(`${$('load-status').textContent} The browser did not keep it in its cache `
          + '(the console says why), so the next load downloads it again.');
      }
    }
  }
}

/** Picking a served model fills in its URL, shows its tab and loads it; "Other URL…" leaves
 *  the URL field to be typed in. */
function pickModel() {
  const option = $('model-pick').selectedOptions[0];
  if (!option?.value) {
    $('url').focus();
    $('url').select();
    return;
  }
  $('url').value = option.value;
  showTab(option.dataset.kind);
  if (!$('load-url').disabled) loadModel(option.value, option.value);
}

async function clearCached() {
  const bytes = cached.reduce((n, m) => n + m.bytes, 0);
  $('clear-cache').disabled = true;
  try {
    await clearCache();
    setStatus(`Cleared the cached model files (${mb(bytes)}); the next load downloads them again.`);
  } catch (e) {
    failure($('load-status'), e, 'Could not clear the cached model files: ');
  }
  await refreshCache();
}

function options() {
  const num = (id) => ($(id).value === '' ? undefined : Number($(id).value));
  return {
    maxTokens: num('max-tokens'),
    temperature: num('temperature'),
    topP: num('top-p'),
    seed: num('seed'),
    chat: $('chat').checked,
    messages: $('chat').checked ? history : [],
  };
}

async function run() {
  const model = models.generate;
  const prompt = $('prompt').value;
  const opts = options();
  $('run').disabled = true;
  $('stop').disabled = false;
  $('output').textContent = '';
  status($('stats'), '');
  document.body.dataset.state = 'generating';
  // Chat: the user's turn shows at once, then the reply's turn with a typing indicator
  // until its first token; otherwise the text streams into #output.
  let target = $('output');
  if (opts.chat) {
    addTurn('user', prompt);
    target = addTurn('assistant', '');
    target.classList.add('typing');
    $('prompt').value = '';
  }
  let reply = '';
  let pieces = 0;
  let first = 0;
  const t0 = performance.now();
  try {
    for await (const delta of model.generate(prompt, opts)) {
      const now = performance.now();
      if (!pieces) {
        first = now;
        target.classList.remove('typing');
      }
      pieces += 1;
      reply += delta;
      target.textContent = reply;
      // Live speed: text pieces (about one per token) since the first, as they stream.
      if (pieces > 1) {
        status($('stats'), `${pieces} tokens, ${((pieces - 1) / ((now - first) / 1000)).toFixed(1)} tok/s…`);
      } else {
        status($('stats'), `first token after ${((now - t0) / 1000).toFixed(1)} s…`);
      }
    }
    target.classList.remove('typing');
    const s = model.stats;
    status($('stats'),
      `${s.generatedTokens} tokens at ${s.decodeTokensPerSec.toFixed(1)} tok/s ` +
      `(first token ${s.firstTokenMs.toFixed(0)} ms, prompt ${s.promptTokens} tokens at ` +
      `${s.prefillTokensPerSec.toFixed(1)} tok/s) on ${model.adapter.name}; stopped: ${s.finish}`);
    document.body.dataset.tokensPerSec = s.decodeTokensPerSec.toFixed(2);
    if (opts.chat) {
      history.push({ role: 'user', content: prompt }, { role: 'assistant', content: reply });
    }
    document.body.dataset.state = 'done';
  } catch (e) {
    target.classList.remove('typing');
    if (opts.chat) {
      // The failed turn leaves the conversation as it was.
      $('transcript').lastChild?.remove();
      $('transcript').lastChild?.remove();
      $('prompt').value = prompt;
    }
    failure($('stats'), e);
    document.body.dataset.state = 'error';
  } finally {
    $('run').disabled = false;
    $('stop').disabled = true;
  }
}

/** A turn of the conversation, shown with its role; returns the element its text goes in. */
function addTurn(role, text) {
  const turn = document.createElement('div');
  turn.className = `turn ${role}`;
  const who = document.createElement('span');
  who.className = 'role';
  who.textContent = `${role}: `;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  turn.append(who, body);
  $('transcript').append(turn);
  turn.scrollIntoView({ block: 'nearest' });
  return body;
}

const cosine = (a, b) => {
  let ab = 0; let aa = 0; let bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return ab / Math.sqrt(aa * bb || 1);
};

async function embed() {
  const model = models.embed;
  const lines = $('sentences').value.split('\n');
  $('embed-run').disabled = true;
  status($('embed-stats'), '');
  document.body.dataset.state = 'embedding';
  try {
    const t0 = performance.now();
    const vectors = await model.embed(lines, {
      batch: Number($('batch').value) || undefined,
      onProgress: (done, total) => { $('embed-stats').textContent = `${done} of ${total} embedded…`; },
    });
    const secs = (performance.now() - t0) / 1000;
    // The matrix: a row and a column per line, each cell the pair's cosine similarity.
    const table = document.createElement('table');
    table.className = 'sim';
    const head = table.insertRow();
    head.insertCell().textContent = '';
    lines.forEach((_, j) => { head.insertCell().textContent = `${j + 1}`; });
    vectors.forEach((a, i) => {
      const row = table.insertRow();
      const th = document.createElement('th');
      th.textContent = `${i + 1}. ${lines[i]}`;
      th.title = lines[i];
      row.appendChild(th);
      vectors.forEach((b) => {
        const c = cosine(a, b);
        const cell = row.insertCell();
        cell.textContent = c.toFixed(3);
        cell.style.background = `color-mix(in srgb, var(--accent) ${Math.round(Math.max(c, 0) * 60)}%, transparent)`;
      });
    });
    $('similarity').replaceChildren(table);
    $('embed-stats').textContent =
      `${lines.length} sentences in ${secs.toFixed(2)} s (${(lines.length / secs).toFixed(1)} sentences/s), ` +
      `${model.width} dimensions${model.normalizes ? ', L2-normalised' : ''}, on ${model.adapter.name}`;
    window.kilnEmbeddings = vectors.map((v) => Array.from(v));
    document.body.dataset.state = 'done';
  } catch (e) {
    failure($('embed-stats'), e);
    document.body.dataset.state = 'error';
  } finally {
    $('embed-run').disabled = false;
  }
}

async function transcribe() {
  const model = models.transcribe;
  const file = $('wav').files[0];
  if (!file) return;
  $('transcribe-run').disabled = true;
  $('speech-output').textContent = '';
  status($('speech-stats'), `Transcribing ${file.name}…`);
  document.body.dataset.state = 'transcribing';
  // How many pieces of text arrived before the end: the stream, not one block at the end.
  let pieces = 0;
  try {
    const timestamps = $('timestamps').checked;
    const t0 = performance.now();
    const t = await model.transcribe(file, {
      language: $('language').value.trim() || 'en',
      timestamps,
      onText: (text) => {
        pieces += 1;
        $('speech-output').textContent += text;
      },
    });
    const secs = (performance.now() - t0) / 1000;
    $('speech-output').textContent = timestamps
      ? t.segments.map((s) => `[${s.start.toFixed(2)} -> ${s.end.toFixed(2)}] ${s.text}`).join('\n')
      : t.text;
    $('speech-stats').textContent =
      `${t.seconds.toFixed(2)} s of audio in ${secs.toFixed(2)} s (${(t.seconds / secs).toFixed(2)}x real time): ` +
      `encoder ${(t.encodeMs / 1000).toFixed(2)} s, decoder ${(t.decodeMs / 1000).toFixed(2)} s for ${t.steps} steps, ` +
      `on ${model.adapter.name}`;
    document.body.dataset.pieces = String(pieces);
    document.body.dataset.realTime = (t.seconds / secs).toFixed(3);
    document.body.dataset.state = 'done';
  } catch (e) {
    failure($('speech-stats'), e);
    document.body.dataset.state = 'error';
  } finally {
    $('transcribe-run').disabled = !$('wav').files.length;
  }
}

function filesFromDrop(event) {
  // A dropped folder arrives as entries; read them all, each with its path in the model
  // folder as a folder picker gives it ("all-MiniLM-L6-v2/1_Pooling/config.json"): two
  // files may share a name. Loose files dropped together are put under one made-up folder.
  const items = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const root = items.length === 1 && items[0].isDirectory ? '' : 'dropped';
  const files = [];
  const walk = (entry) => new Promise((resolve) => {
    if (entry.isFile) {
      entry.file((f) => {
        Object.defineProperty(f, 'webkitRelativePath', { value: `${root}${entry.fullPath}`.replace(/^\//, '') });
        files.push(f);
        resolve();
      }, resolve);
    } else {
      entry.createReader().readEntries(async (es) => { await Promise.all(es.map(walk)); resolve(); }, resolve);
    }
  });
  return Promise.all(items.map(walk)).then(() => files);
}

const adapterProblem = await webgpuAdapter();
if (adapterProblem) {
  $('nowebgpu').textContent = adapterProblem;
  $('nowebgpu').hidden = false;
  $('loader').classList.add('disabled');
  document.body.dataset.state = 'nowebgpu';
} else {
  $('load-url').onclick = () => loadModel($('url').value, $('url').value);
  $('url').oninput = showUrl;
  $('url').onkeydown = (e) => {
    if (e.key === 'Enter' && !$('load-url').disabled) $('load-url').click();
  };
  $('model-pick').onchange = pickModel;
  $('clear-cache').onclick = clearCached;
  // Without the Cache API (an insecure origin) nothing is cached: no button to clear it.
  $('clear-cache').hidden = typeof caches === 'undefined';
  await refreshCache();
  $('folder').onchange = (e) => loadModel(e.target.files, `${e.target.files.length} picked files`);
  const drop = $('drop');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const files = await filesFromDrop(e);
    loadModel(files, `${files.length} dropped files`);
  };
  for (const b of document.querySelectorAll('#tabs button')) b.onclick = () => showTab(b.dataset.kind);
  $('run').onclick = run;
  // Enter sends; Shift+Enter starts a new line.
  $('prompt').onkeydown = (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!$('run').disabled) run();
    }
  };
  $('stop').onclick = () => models.generate?.cancel();
  $('embed-run').onclick = embed;
  $('transcribe-run').onclick = transcribe;
  $('wav').onchange = () => { $('transcribe-run').disabled = !models.transcribe || !$('wav').files.length; };
  $('chat').onchange = () => { history = []; $('transcript').textContent = ''; };
  document.body.dataset.state = 'ready';
}
