// Drives headless Chromium (WebGPU on SwiftShader) through the demo page: load SmolLM2 from
// the local server, generate greedily, compare with native kiln, take a screenshot; with
// EMBED_LINES set, the Embeddings tab: those lines embedded, compared with native `kiln
// embed`'s EMBED_NATIVE; with SPEECH_WAV set, the Speech tab: the file transcribed, compared
// with native `kiln transcribe`'s SPEECH_NATIVE; then,
// with BENCH_OUT set, the benchmark page: a synthetic model benchmarked as native
// `kiln bench --model` does and profiled by kernel, its JSON written to BENCH_OUT and
// checked against BENCH_SCHEMA. Between, the browser cache: a second visit loads SmolLM2 from
// the Cache API with no request for its files, and "Clear cached weights" empties it; a GPU
// device lost (injected) is reported on the page.
// usage: node e2e.mjs URL PROMPT TOKENS EXPECTED_FILE SCREENSHOT
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';

const [url, prompt, tokens, expectedFile, screenshot] = process.argv.slice(2);
const expected = readFileSync(expectedFile, 'utf8');
const minutes = (m) => m * 60_000;

const quiet = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
// Each browser has a profile on disk, as a user's has (removed when the test exits): its
// pages share one Cache API store, and an in-memory (incognito-like) one holds too little
// for SmolLM2's 540 MB, so the page would (rightly) fall back to the network.
const profiles = [];
process.on('exit', () => profiles.forEach((p) => rmSync(p, { recursive: true, force: true })));
const launch = (webgpu) => {
  const profile = mkdtempSync(join(tmpdir(), 'kiln-e2e-'));
  profiles.push(profile);
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1000, height: 800 },
    args: ['--no-sandbox', '--no-first-run', ...quiet,
      ...(webgpu ? ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'] : [])],
  });
};

async function open(browser, at = url) {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  const state = () => page.evaluate(() => document.body.dataset.state);
  const waitState = (states, ms) =>
    page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout: ms, polling: 500 });
  await page.goto(at);
  await waitState(['ready', 'nowebgpu'], minutes(1));
  return { page, state, waitState };
}

// Load the tab's model from its default URL; the page's state says when it is there.
async function loadTab(browser, kind) {
  const o = await open(browser);
  await o.page.click(`#tab-${kind}`);
  await o.page.click('#load-url');
  await o.waitState(['loaded', 'error'], minutes(10));
  if ((await o.state()) !== 'loaded') {
    throw new Error(`loading the ${kind} tab's model failed: ${await o.page.textContent('#load-status')}`);
  }
  console.error(`${kind}: ${await o.page.textContent('#load-status')}`);
  return o;
}

// The Embeddings tab against native `kiln embed`: every sentence's cosine similarity with its
// native embedding at least 0.99999 (the same kernels on the same SwiftShader; only the
// host differs), the similarity matrix drawn, and the over-long input's truncation warned of.
async function embeddings(browser) {
  const { page, state, waitState } = await loadTab(browser, 'embed');
  const warnings = [];
  page.on('console', (m) => { if (m.type() === 'warning' && /truncated/.test(m.text())) warnings.push(m.text()); });
  const lines = readFileSync(process.env.EMBED_LINES, 'utf8').replace(/\n$/, '').split('\n');
  const native = readFileSync(process.env.EMBED_NATIVE, 'utf8').trim().split('\n').map(JSON.parse);
  await page.fill('#sentences', lines.join('\n'));
  await page.fill('#batch', '8');
  await page.click('#embed-run');
  await waitState(['done', 'error'], minutes(10));
  if ((await state()) !== 'done') throw new Error(`embedding failed: ${await page.textContent('#embed-stats')}`);
  const got = await page.evaluate(() => window.kilnEmbeddings);
  if (got.length !== lines.length || native.length !== lines.length) {
    throw new Error(`${lines.length} lines, ${got.length} browser embeddings, ${native.length} native ones`);
  }
  const cos = (a, b) => {
    let ab = 0; let aa = 0; let bb = 0;
    for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
    return ab / Math.sqrt(aa * bb);
  };
  const sims = got.map((v, i) => cos(v, native[i]));
  const worst = Math.min(...sims);
  if (!(worst >= 0.99999)) {
    throw new Error(`browser embeddings differ from native ones: cosine ${sims.map((c) => c.toFixed(6)).join(', ')}`);
  }
  const cells = await page.locator('#similarity td').count();
  if (cells < lines.length * lines.length) throw new Error(`the similarity matrix has ${cells} cells`);
  if (!warnings.length) throw new Error('the over-long sentence was truncated without a console warning');
  // A text model's method on an embedding model is a clear error, not a TypeError.
  const wrong = await page.evaluate(() => window.kilnModels.embed.transcribe(new Uint8Array(4)).then(() => 'no error', (e) => e.message));
  if (!/needs a speech model/.test(wrong)) throw new Error(`transcribe() on an embedding model said: ${wrong}`);
  console.error(`embeddings: ${lines.length} sentences, cosine with native >= ${worst.toFixed(7)}; ${await page.textContent('#embed-stats')}`);
  console.log(`browser embeddings: ${lines.length} sentences, min cosine with native ${worst.toFixed(7)}`);
  await page.close();
}

// The Speech tab against native `kiln transcribe`: a file that is not a WAV gets a clear
// error; the WAV's text, streamed in more than one piece, equals native's.
async function speech(browser) {
  const { page, state, waitState } = await loadTab(browser, 'transcribe');
  await page.setInputFiles('#wav', process.env.EMBED_LINES);
  await page.click('#transcribe-run');
  await waitState(['done', 'error'], minutes(2));
  const bad = await page.textContent('#speech-stats');
  if ((await state()) !== 'error' || !/not a WAV/.test(bad)) throw new Error(`a text file as WAV gave no clear error: ${bad}`);
  console.error(`not a WAV: ${bad}`);
  await page.setInputFiles('#wav', process.env.SPEECH_WAV);
  await page.click('#transcribe-run');
  await waitState(['done', 'error'], minutes(20));
  const stats = await page.textContent('#speech-stats');
  if ((await state()) !== 'done') throw new Error(`transcription failed: ${stats}`);
  const text = (await page.textContent('#speech-output')).trim();
  const expected = readFileSync(process.env.SPEECH_NATIVE, 'utf8').trim();
  const pieces = Number(await page.evaluate(() => document.body.dataset.pieces));
  if (text !== expected) throw new Error(`the browser heard ${JSON.stringify(text)}, native kiln ${JSON.stringify(expected)}`);
  if (!(pieces > 1)) throw new Error(`the text came in ${pieces} piece(s), not streamed`);
  console.error(`speech: ${stats}`);
  console.log(`browser transcript (${pieces} pieces, equal to native): ${JSON.stringify(text)}; ${stats}`);
  await page.close();
}

let failed = false;
// A browser without WebGPU gets a plain message, not a broken page.
{
  const browser = await launch(false);
  try {
    const { page, state } = await open(browser);
    if ((await state()) !== 'nowebgpu' || !(await page.isVisible('#nowebgpu'))) {
      failed = true;
      console.log('FAILED: without WebGPU the page did not say so');
    }
  } finally {
    await browser.close();
  }
}

const browser = await launch(true);
try {
  const { page, state, waitState } = await open(browser);
  if ((await state()) === 'nowebgpu') throw new Error('the page found no WebGPU in this Chromium');
  // What the page says of the browser cache: a failed store is warned of, not an error.
  const cacheWarnings = [];
  page.on('console', (m) => { if (/browser cache/.test(m.text())) cacheWarnings.push(m.text()); });

  // A truncated model file is a clear error on the page.
  await page.fill('#url', 'bad/');
  await page.click('#load-url');
  await waitState(['loaded', 'error'], minutes(5));
  const bad = await page.textContent('#load-status');
  if ((await state()) !== 'error' || !/truncated|past the end/.test(bad)) {
    throw new Error(`a truncated model gave no clear error: ${bad}`);
  }
  if (!(await page.isVisible('#load-status.failed'))) throw new Error('the load error is not shown as an error');
  // A failed load leaves none of its files in the browser cache.
  const badCached = await page.evaluate(async () => (await (await import('./kiln.js')).cachedModels()).map((m) => m.url));
  if (badCached.length) throw new Error(`a failed load left files in the browser cache: ${badCached.join(', ')}`);
  // A server that is not there: plain words, not a JsValue backtrace.
  await page.fill('#url', 'http://127.0.0.1:9/model/');
  await page.click('#load-url');
  await waitState(['loaded', 'error'], minutes(2));
  const refused = await page.textContent('#load-status');
  if ((await state()) !== 'error' || /JsValue|web_sys/.test(refused) || !/could not fetch/.test(refused)) {
    throw new Error(`a refused fetch gave no plain error: ${refused}`);
  }
  console.error(`no server: ${refused}`);
  console.error(`bad model: ${bad}`);

  await page.fill('#url', 'model/');
  await page.click('#load-url');
  await waitState(['loaded', 'error'], minutes(10));
  if ((await state()) !== 'loaded') throw new Error(`loading failed: ${await page.textContent('#load-status')}`);
  console.error(await page.textContent('#load-status'), await page.textContent('#adapter'));
  // The first visit downloads (the failed bad/ load before left nothing cached).
  const firstFrom = await page.evaluate(() => document.body.dataset.loadedFrom);
  if (firstFrom !== 'network') throw new Error(`the first load of model/ came from ${firstFrom}, not the network`);

  // The prompt, greedy, as plain text; the output once done.
  const generate = async () => {
    await page.fill('#prompt', prompt);
    await page.fill('#max-tokens', String(tokens));
    await page.fill('#temperature', '0');
    await page.setChecked('#chat', false);
    await page.click('#run');
    await waitState(['done', 'error'], minutes(20));
    return page.textContent('#output');
  };
  const text = await generate();
  const stats = await page.textContent('#stats');
  await page.screenshot({ path: screenshot, fullPage: true });
  if ((await state()) !== 'done') throw new Error(`generation failed: ${stats}`);

  const loadSeconds = await page.evaluate(() => document.body.dataset.loadSeconds);
  const tps = await page.evaluate(() => document.body.dataset.tokensPerSec);

  // A second visit downloads nothing: the page marks model/ as cached, and loading it
  // (through the picker) reads its files from the browser cache, with no request for a
  // weight file and no file of model/ served again; the cached weights generate the same
  // text. Then "Clear cached weights" empties the cache and the badge goes.
  {
    const requests = [];
    const served = [];
    const inModel = (u) => new URL(u).pathname.startsWith('/model/');
    page.on('request', (r) => { if (inModel(r.url())) requests.push(r.url()); });
    page.on('response', (r) => { if (inModel(r.url()) && r.status() === 200) served.push(r.url()); });
    await page.reload();
    await waitState(['ready'], minutes(1));
    await page.waitForSelector('#cached', { state: 'visible', timeout: 10_000 }).catch(async () => {
      const disk = statfsSync(tmpdir());
      throw new Error(`no "cached" badge for model/ on a second visit (${await page.textContent('#cache-info')}); `
        + `the page warned: ${JSON.stringify(cacheWarnings)}; ${(disk.bavail * disk.bsize / 1e9).toFixed(1)} GB free under ${tmpdir()}`);
    });
    console.error(`second visit: badge "${await page.textContent('#cached')}"; ${await page.textContent('#cache-info')}`);
    await page.fill('#url', 'elsewhere/');
    if (await page.isVisible('#cached')) throw new Error('the "cached" badge shows for a URL never loaded');
    if ((await page.inputValue('#model-pick')) !== '') throw new Error('the picker does not say "Other URL…" for a typed URL');
    await page.selectOption('#model-pick', 'model/');
    if ((await page.inputValue('#url')) !== 'model/') throw new Error('picking model/ did not fill in its URL');
    await waitState(['loaded', 'error'], minutes(10));
    const again = await page.textContent('#load-status');
    if ((await state()) !== 'loaded') throw new Error(`loading model/ from the cache failed: ${again}`);
    const from = await page.evaluate(() => document.body.dataset.loadedFrom);
    const weights = requests.filter((u) => /\.safetensors$/.test(new URL(u).pathname));
    if (from !== 'cache' || !/from cache/.test(again) || weights.length || served.length) {
      throw new Error(`the second load was not from the cache: "${again}" (loaded from ${from}); `
        + `weight requests: ${JSON.stringify(weights)}; files served: ${JSON.stringify(served)}`);
    }
    console.error(`second visit: ${again} (${requests.length} requests under model/, none for weights)`);
    const cachedText = await generate();
    if ((await state()) !== 'done' || cachedText !== text) {
      throw new Error(`the cached weights generated ${JSON.stringify(cachedText)}, the downloaded ones ${JSON.stringify(text)} (${await page.textContent('#stats')})`);
    }
    await page.waitForSelector('#cached', { state: 'visible', timeout: 10_000 });
    await page.screenshot({ path: screenshot.replace(/(\.png)?$/, '-cached.png'), fullPage: true });

    // A part of the weights gone from the cache: the next load sees it before reading any,
    // downloads the file again, and stores it whole again.
    const parts = await page.evaluate(async () => {
      const cache = await caches.open((await import('./kiln.js')).CACHE_NAME);
      const weights = new URL('model/model.safetensors', location.href).href;
      const n = Number((await cache.match(weights)).headers.get('x-kiln-parts'));
      await cache.delete(`${weights}?kiln-part=1`);
      return n;
    });
    if (!(parts > 1)) throw new Error(`model.safetensors is stored in ${parts} parts, not several`);
    cacheWarnings.length = 0;
    await page.selectOption('#model-pick', '');
    await page.selectOption('#model-pick', 'model/');
    await waitState(['loaded', 'error'], minutes(10));
    const healed = await page.textContent('#load-status');
    const healedFrom = await page.evaluate(() => document.body.dataset.loadedFrom);
    if ((await state()) !== 'loaded' || healedFrom !== 'network'
      || !cacheWarnings.some((w) => /part 1 of \d+ is gone/.test(w))) {
      throw new Error(`with a part of its weights gone from the cache, model/ loaded from ${healedFrom}: "${healed}"; `
        + `the page warned: ${JSON.stringify(cacheWarnings)}`);
    }
    await page.waitForSelector('#cached', { state: 'visible', timeout: 10_000 }).catch(() => {
      throw new Error(`model/ was not cached again after a part of it went missing: ${JSON.stringify(cacheWarnings)}`);
    });
    console.error(`a part gone (of ${parts}): ${healed}; ${cacheWarnings.join('; ')}`);
    await page.click('#clear-cache');
    await page.waitForSelector('#cached', { state: 'hidden', timeout: 10_000 }).catch(async () => {
      throw new Error(`the "cached" badge stayed after "Clear cached weights": ${await page.textContent('#load-status')}`);
    });
    const left = await page.evaluate(async () => {
      const kiln = await import('./kiln.js');
      return { models: await kiln.cachedModels(), cache: await caches.has(kiln.CACHE_NAME) };
    });
    if (left.models.length || left.cache) throw new Error(`the cache is not empty after clearing it: ${JSON.stringify(left)}`);
    console.error(`cleared: ${await page.textContent('#load-status')}`);

    // A browser that will not store the model (its quota for the page cut to 50 MB, through
    // the DevTools protocol): the load still works, from the network, the page says the model
    // was not kept, and none of its files stay cached (a model is cached whole or not at all).
    const cdp = await page.context().newCDPSession(page);
    const origin = new URL(url).origin;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 50e6 });
    cacheWarnings.length = 0;
    await page.selectOption('#model-pick', '');
    await page.selectOption('#model-pick', 'model/');
    await waitState(['loaded', 'error'], minutes(10));
    const refused = await page.textContent('#load-status');
    const kept = await page.evaluate(async () => (await (await import('./kiln.js')).cachedModels()).map((m) => m.url));
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    if ((await state()) !== 'loaded' || !/did not keep it in its cache/.test(refused) || kept.length
      || !cacheWarnings.some((w) => /could not store/.test(w)) || (await page.isVisible('#cached'))) {
      throw new Error(`with the page's storage quota at 50 MB: "${refused}"; cached: ${JSON.stringify(kept)}; `
        + `the page warned: ${JSON.stringify(cacheWarnings)}`);
    }
    console.error(`quota of 50 MB: ${refused} (${cacheWarnings.join('; ')})`);
  }

  // The same model from picked files (the folder picker's path), then a chat turn.
  const dir = process.env.MODEL_DIR;
  if (dir) {
    const { page: p2, state: s2, waitState: w2 } = await open(browser);
    await p2.setInputFiles('#folder', dir);
    await w2(['loaded', 'error'], minutes(10));
    if ((await s2()) !== 'loaded') throw new Error(`loading picked files failed: ${await p2.textContent('#load-status')}`);
    await p2.setChecked('#chat', true);
    await p2.fill('#prompt', 'What is the capital of France?');
    await p2.fill('#max-tokens', '8');
    await p2.fill('#temperature', '0');
    // Enter sends, and the user's turn shows while the reply is awaited.
    await p2.press('#prompt', 'Enter');
    await p2.waitForSelector('#transcript .turn.user', { timeout: 5000 });
    if (!(await p2.isVisible('#transcript .turn.assistant'))) throw new Error('no reply turn while generating');
    await w2(['done', 'error'], minutes(20));
    const transcript = await p2.textContent('#transcript');
    if ((await s2()) !== 'done' || !transcript.includes('Paris')) {
      throw new Error(`chat over picked files failed: ${transcript} ${await p2.textContent('#stats')}`);
    }
    console.error(`picked files + chat: ${JSON.stringify(transcript)}`);
    await p2.screenshot({ path: screenshot.replace(/(\.png)?$/, '-chat.png'), fullPage: true });
    // The GPU device lost (injected at kiln's next submission): the generation fails and
    // the page says why, in plain words; the model knows it is lost.
    await p2.evaluate(() => window.kilnModels.generate.injectDeviceLoss(1));
    await p2.setChecked('#chat', false);
    await p2.fill('#prompt', 'Hello');
    await p2.click('#run');
    await w2(['error'], minutes(5));
    const lostText = await p2.textContent('#stats');
    const lost = await p2.evaluate(() => window.kilnModels.generate.lost);
    if (!lostText.includes('GPU device lost') || !lost) {
      throw new Error(`a lost device was not reported: ${lostText} (lost: ${lost})`);
    }
    console.error(`lost device: ${lostText}`);
    await p2.close();
  }
  if (process.env.EMBED_LINES) await embeddings(browser);
  if (process.env.SPEECH_WAV) await speech(browser);
  // The benchmark page: the same model benchmark as native `kiln bench --model`, its JSON
  // checked against the schema native runs are written in.
  const benchOut = process.env.BENCH_OUT;
  if (benchOut) {
    const { page: b, state: bs, waitState: bw } = await open(browser, url.replace(/index\.html$/, 'bench.html'));
    const [p, n, r] = (process.env.BENCH_PNR ?? '16,16,2').split(',');
    await b.selectOption('#mode', 'model');
    await b.selectOption('#model', 'smollm2-135m');
    await b.fill('#dtype', process.env.BENCH_DTYPE ?? 'q4_0');
    await b.fill('#prompt', p);
    await b.fill('#tokens', n);
    await b.fill('#runs', r);
    await b.setChecked('#profile', true);
    await b.click('#run');
    await bw(['done', 'error'], minutes(20));
    const log = await b.textContent('#log');
    if ((await bs()) !== 'done') throw new Error(`the benchmark page failed: ${log}`);
    const json = await b.evaluate(() => window.kilnBenchJson);
    writeFileSync(benchOut, json);
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(JSON.parse(readFileSync(process.env.BENCH_SCHEMA, 'utf8')));
    if (!validate(JSON.parse(json))) {
      throw new Error(`the page's JSON breaks the schema: ${ajv.errorsText(validate.errors)}`);
    }
    // The page profiled one step of each phase by kernel (Chromium's SwiftShader adapter has
    // timestamp queries).
    const rows = JSON.parse(json).adapters[0].models[0].profile ?? [];
    for (const phase of ['decode', 'prefill']) {
      const mine = rows.filter((x) => x.phase === phase && x.seconds_per_step > 0);
      if (!mine.some((x) => x.kernel.startsWith('gemv'))) {
        throw new Error(`the page's profile has no GEMV time for ${phase}: ${JSON.stringify(rows)}`);
      }
    }
    console.error(`benchmark page:\n${await b.textContent('#table')}`);
    await b.close();
  }
  console.log(`browser: loaded in ${loadSeconds} s; ${stats}`);
  console.log(`screenshots: ${screenshot}, ${screenshot.replace(/(\.png)?$/, '-cached.png')}, ${screenshot.replace(/(\.png)?$/, '-chat.png')}`);
  if (text !== expected) {
    failed = true;
    console.log(`MISMATCH: native ${JSON.stringify(expected)}`);
  }
  console.log(`text: ${JSON.stringify(text)}`);
  console.log(`browser tokens/s: ${tps}`);
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
