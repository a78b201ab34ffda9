// The demo page: load a model from a URL or a picked/dropped folder, then stream text.
import { webgpuAdapter, load } from './kiln.js';

const $ = (id) => document.getElementById(id);
let model = null;
let history = []; // chat turns: { role, content }

function setStatus(text) {
  $('load-status').textContent = text;
}

async function loadModel(source, label) {
  document.body.dataset.state = 'loading';
  $('load-url').disabled = true;
  $('progress').hidden = false;
  $('progress').value = 0;
  setStatus(`Loading ${label}…`);
  const t0 = performance.now();
  try {
    model = await load(source, {
      onProgress: ({ file, loaded, total }) => {
        $('progress').value = total ? loaded / total : 0;
        setStatus(`Loading ${file}: ${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`);
      },
    });
    const secs = (performance.now() - t0) / 1000;
    $('progress').value = 1;
    setStatus(`Loaded ${label} in ${secs.toFixed(1)} s.`);
    document.body.dataset.loadSeconds = secs.toFixed(2);
    $('adapter').textContent = `GPU: ${model.adapter.name} (${model.adapter.deviceType === 'Cpu' ? 'software' : 'hardware'}, shader-f16 ${model.adapter.shaderF16 ? 'yes' : 'no'}). `
    + 'A page gets one adapter from WebGPU, so the model runs whole on it: splitting a model '
    + 'across adapters is for the native library and CLI.';
    $('generate').classList.remove('disabled');
    $('run').disabled = false;
    $('chat').checked = model.hasChatTemplate && $('chat').checked;
    history = [];
    document.body.dataset.state = 'loaded';
  } catch (e) {
    setStatus(`Could not load ${label}: ${e.message ?? e}`);
    document.body.dataset.state = 'error';
  } finally {
    $('load-url').disabled = false;
  }
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
  const prompt = $('prompt').value;
  const opts = options();
  $('run').disabled = true;
  $('stop').disabled = false;
  $('output').textContent = '';
  $('stats').textContent = '';
  document.body.dataset.state = 'generating';
  let reply = '';
  try {
    for await (const delta of model.generate(prompt, opts)) {
      reply += delta;
      $('output').textContent = reply;
    }
    const s = model.stats;
    $('stats').textContent =
      `${s.generatedTokens} tokens at ${s.decodeTokensPerSec.toFixed(1)} tok/s ` +
      `(first token ${s.firstTokenMs.toFixed(0)} ms, prompt ${s.promptTokens} tokens at ` +
      `${s.prefillTokensPerSec.toFixed(1)} tok/s) on ${model.adapter.name}; stopped: ${s.finish}`;
    document.body.dataset.tokensPerSec = s.decodeTokensPerSec.toFixed(2);
    if (opts.chat) {
      history.push({ role: 'user', content: prompt }, { role: 'assistant', content: reply });
      const turns = history.map((t) => `<div class="turn ${t.role}"></div>`).join('');
      $('transcript').innerHTML = turns;
      [...$('transcript').children].forEach((el, i) => { el.textContent = `${history[i].role}: ${history[i].content}`; });
      $('output').textContent = '';
      $('prompt').value = '';
    }
    document.body.dataset.state = 'done';
  } catch (e) {
    $('stats').textContent = `Error: ${e.message ?? e}`;
    document.body.dataset.state = 'error';
  } finally {
    $('run').disabled = false;
    $('stop').disabled = true;
  }
}

function filesFromDrop(event) {
  // A dropped folder arrives as entries; read them all.
  const items = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const files = [];
  const walk = (entry) => new Promise((resolve) => {
    if (entry.isFile) entry.file((f) => { files.push(f); resolve(); }, resolve);
    else entry.createReader().readEntries(async (es) => { await Promise.all(es.map(walk)); resolve(); }, resolve);
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
  $('run').onclick = run;
  $('stop').onclick = () => model?.cancel();
  $('chat').onchange = () => { history = []; $('transcript').textContent = ''; };
  document.body.dataset.state = 'ready';
}
