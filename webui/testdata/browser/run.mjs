// Drives Debian's Chromium (headless, through playwright-core) against a running crowdsurf demo
// and prints one JSON report on stdout; webui's TestBrowser starts the demo, runs this and judges
// the report. Usage:
//   node run.mjs --peer URL --origin URL --dashboard URL [--shots DIR] [--chromium PATH]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const startTimeout = 30_000; // a page's video must start playing within this
const window_ = 12_000;      // ... and then advance by ...
const advance = 10;          // ... this many seconds of media within window_
const sleep = ms => new Promise(r => setTimeout(r, ms));

const userDataDir = mkdtempSync(join(tmpdir(), 'crowdsurf-chromium-'));
const report = {pages: [], dashboard: null, originList: null};
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium || '/usr/bin/chromium',
    headless: true,
    viewport: {width: 1280, height: 800},
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const ll = new URL(args.peer);
  ll.searchParams.set('ll', '1');
  const jobs = [watch('peer', args.peer), watch('peer-ll', ll.href), watch('origin', args.origin), dashboard(args.dashboard),
    originList(new URL('/', args.origin).href)];
  await Promise.all(jobs);
} catch (e) {
  report.error = String(e && e.stack || e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, {recursive: true, force: true});
}
process.stdout.write(JSON.stringify(report, null, 1) + '\n');

// listen records what went wrong in a page: uncaught exceptions, console errors, CSP violations.
function listen(page, r) {
  r.pageErrors = [];
  r.consoleErrors = [];
  page.on('pageerror', e => r.pageErrors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') r.consoleErrors.push(m.text()); });
}

async function watch(name, url) {
  const r = {name, url};
  report.pages.push(r);
  const page = await context.newPage();
  listen(page, r);
  const opened = Date.now();
  await page.goto(url);
  const time = () => page.evaluate(() => document.getElementById('video').currentTime);
  try {
    await page.waitForFunction(() => document.getElementById('video').currentTime > 0, null, {timeout: startTimeout, polling: 100});
  } catch (e) {
    r.startError = 'video did not start within ' + startTimeout + ' ms';
  }
  r.startMs = Date.now() - opened;
  const t0 = await time();
  const w0 = Date.now();
  let t = t0;
  while (Date.now() - w0 < window_ && t - t0 < advance) {
    await sleep(250);
    t = await time();
  }
  r.advanced = t - t0;
  r.advanceMs = Date.now() - w0;
  Object.assign(r, await page.evaluate(() => ({
    // live latency as DESIGN.md defines it: wall clock minus the date-time of the media playing
    // (hls.js maps the playhead to EXT-X-PROGRAM-DATE-TIME); hls.js's own estimate beside it.
    liveLatency: window.crowdsurf.hls && window.crowdsurf.hls.playingDate
      ? (Date.now() - window.crowdsurf.hls.playingDate.getTime()) / 1000 : null,
    hlsLatency: window.crowdsurf.hls ? window.crowdsurf.hls.latency : null,
    lowLatency: window.crowdsurf.lowLatency,
    fatal: window.crowdsurf.fatal, errors: window.crowdsurf.errors,
    status: document.getElementById('status').textContent,
    figures: [...document.querySelectorAll('#figure-list dt')].map(dt => dt.textContent + ': ' + dt.nextElementSibling.textContent),
    hero: document.getElementById('hero-value').textContent,
  })));
  if (args.shots && name === 'peer') {
    r.shot = join(args.shots, 'peer-page.png');
    await page.screenshot({path: r.shot});
  }
}

async function dashboard(url) {
  const r = {url};
  report.dashboard = r;
  const page = await context.newPage();
  listen(page, r);
  await page.goto(url);
  try {
    await page.waitForFunction(() => document.querySelectorAll('#graph .node.origin').length === 1 &&
      document.querySelectorAll('#graph .node.peer').length >= 1, null, {timeout: 20_000, polling: 200});
  } catch (e) {
    r.drawError = 'the dashboard drew no origin and peer within 20 s';
  }
  // Let the swarm settle (every peer announced, trees formed) before counting; for the picture,
  // also until the visitor the test sends has come and gone (the tracker's peer TTL is 10 s).
  await sleep(args.shots ? 26_000 : 2_000);
  Object.assign(r, await page.evaluate(() => ({
    origins: document.querySelectorAll('#graph .node.origin').length,
    peers: new Set([...document.querySelectorAll('#graph .node.peer')].map(n => n.dataset.handle)).size,
    nodes: document.querySelectorAll('#graph .node.peer').length,
    edges: document.querySelectorAll('#graph .edge').length,
    figures: [...document.querySelectorAll('#figure-list dt')].map(dt => dt.textContent + ': ' + dt.nextElementSibling.textContent),
    hero: document.getElementById('hero-value').textContent,
  })));
  if (args.shots) {
    r.shot = join(args.shots, 'dashboard.png');
    await page.screenshot({path: r.shot});
  }
}

// originList opens the origin's / and counts the streams it links to.
async function originList(url) {
  const r = {url};
  report.originList = r;
  const page = await context.newPage();
  listen(page, r);
  await page.goto(url);
  try {
    await page.waitForSelector('#stream-rows a[href^="/watch/"]', {timeout: 10_000});
  } catch (e) {
    r.error = 'the origin\'s page listed no stream within 10 s';
  }
  r.streams = await page.evaluate(() => [...document.querySelectorAll('#stream-rows a')].map(a => a.getAttribute('href')));
  await page.close();
}
