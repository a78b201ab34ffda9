// The benchmark page: run kiln's suite on this page's adapter, show the tables `kiln bench`
// prints, and offer the JSON (the schema native `kiln bench --json` writes) for download.
import { webgpuAdapter, benchmark, benchmarkTable } from './kiln.js';

const $ = (id) => document.getElementById(id);

function options() {
  const mode = $('mode').value;
  if (mode === 'kernels') {
    return { mode, sweep: $('sweep').value.trim(), dtypes: $('dtypes').value.trim() };
  }
  return {
    mode,
    model: $('model').value,
    dtype: $('dtype').value.trim() || undefined,
    prompt: Number($('prompt').value),
    tokens: Number($('tokens').value),
    runs: Number($('runs').value),
    profile: $('profile').checked,
  };
}

$('mode').addEventListener('change', () => {
  $('kernel-options').hidden = $('mode').value !== 'kernels';
  $('model-options').hidden = $('mode').value !== 'model';
});

$('run').addEventListener('click', async () => {
  $('run').disabled = true;
  $('download').hidden = true;
  $('table').textContent = '';
  $('log').textContent = '';
  document.body.dataset.state = 'running';
  const t0 = performance.now();
  const log = (line) => {
    const s = ((performance.now() - t0) / 1000).toFixed(1);
    $('log').textContent += `[${s} s] ${line}\n`;
  };
  try {
    const json = await benchmark(options(), { onLog: log });
    $('table').textContent = await benchmarkTable(json);
    const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
    $('download').href = url;
    $('download').hidden = false;
    window.kilnBenchJson = json;
    log('done');
    document.body.dataset.state = 'done';
  } catch (e) {
    log(`error: ${e.message ?? e}`);
    document.body.dataset.state = 'error';
  } finally {
    $('run').disabled = false;
  }
});

const why = await webgpuAdapter();
if (why) {
  $('nowebgpu').textContent = why;
  $('nowebgpu').hidden = false;
  $('run').disabled = true;
  document.body.dataset.state = 'nowebgpu';
} else {
  document.body.dataset.state = 'ready';
}
