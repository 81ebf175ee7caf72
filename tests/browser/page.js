#!/usr/bin/env node
// Opens edgerec's web page in headless Chromium (Debian's, /usr/bin/chromium, or $CHROMIUM),
// waits for its timelines, clicks the first stream's recorded span and waits for the player
// to pass --seconds; saves a screenshot. Prints one JSON line:
// {"ok", "why", "timelines": {stream: [{start_ms, end_ms, uploaded}]}, "states", "currentTime", "errors"}.
//
//   node page.js URL [--screenshot out.png] [--seconds 3] [--timeout 60]
'use strict';
const { options, launch, run } = require('./chromium');

async function main() {
  const o = options(process.argv.slice(2), { screenshot: '', seconds: 3, timeout: 60 },
    'page.js URL [--screenshot PNG] [--seconds S] [--timeout S]');
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1040, height: 760 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push('failed: ' + r.url()));
    await page.goto(o.url, { waitUntil: 'load' });
    await page.waitForFunction(() => window.edgerec && window.edgerec.ready, { timeout: o.timeout * 1000 });
    const timelines = await page.evaluate(() => window.edgerec.timelines);
    const states = await page.$$eval('.state', (e) => e.map((x) => x.textContent));
    const rect = await page.$('svg rect.rec');
    if (!rect) {
      console.log(JSON.stringify({ ok: false, why: 'no recorded span drawn', timelines, states, errors }));
      return 1;
    }
    const box = await rect.boundingBox();
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    const played = await page
      .waitForFunction((s) => document.getElementById('v').currentTime >= s, { timeout: o.timeout * 1000 }, o.seconds)
      .then(() => true, () => false);
    const currentTime = await page.evaluate(() => document.getElementById('v').currentTime);
    const playing = await page.evaluate(() => window.edgerec.playing);
    if (o.screenshot) await page.screenshot({ path: o.screenshot });
    const ok = played && errors.length === 0;
    console.log(JSON.stringify({ ok, why: played ? 'played' : 'did not play', timelines, states, playing, currentTime, errors }));
    return ok ? 0 : 1;
  } finally {
    await browser.close();
  }
}

run(main);
