#!/usr/bin/env node
// Plays a URL in headless Chromium (Debian's, /usr/bin/chromium, or $CHROMIUM) and prints
// one JSON line: {"ok", "why", "currentTime", "duration", "errors": [...]}.
//
//   node play.js URL [--player hls|mpegts|native] [--seconds 5] [--timeout 60]
//
// ok is true once the video's currentTime passed --seconds with no fatal player error.
// `hls` plays with hls.js, `mpegts` an FLV with mpegts.js (flv.js's maintained successor;
// both from npm, the versions in package-lock.json); `native` with the <video> element alone. Exit status 0 when ok, 1 when not, 2 on a harness failure.
'use strict';
const { options, launch, run } = require('./chromium');

async function main() {
  const o = options(process.argv.slice(2), { player: 'hls', seconds: 5, timeout: 60 },
    'play.js URL [--player hls|mpegts|native] [--seconds S] [--timeout S]');
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const console_lines = [];
    page.on('console', (m) => console_lines.push(m.text()));
    // The page takes the media's origin (same-origin fetches: no CORS, no private-network
    // checks from an opaque about:blank origin), whatever that server answers for `/`.
    await page.goto(new URL('/', o.url).href).catch(() => {});
    await page.setContent('<video id="v" muted playsinline></video>');
    if (o.player === 'hls') {
      await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
    } else if (o.player === 'mpegts') {
      await page.addScriptTag({ path: require.resolve('mpegts.js/dist/mpegts.js') });
    }
    const result = await page.evaluate(
      (url, player, seconds, timeoutMs) =>
        new Promise((resolve) => {
          const v = document.getElementById('v');
          const errors = [];
          let settled = false;
          const done = (ok, why) => {
            if (settled) return;
            settled = true;
            resolve({ ok, why, currentTime: v.currentTime, duration: v.duration, errors });
          };
          v.addEventListener('timeupdate', () => {
            if (v.currentTime >= seconds) done(errors.every((e) => !e.fatal), 'played');
          });
          v.addEventListener('error', () => {
            errors.push({ fatal: true, media: v.error && v.error.message });
            done(false, 'media element error');
          });
          v.addEventListener('ended', () => done(v.currentTime >= seconds, 'ended'));
          setTimeout(() => done(false, 'timeout'), timeoutMs);
          const play = () => v.play().catch((e) => errors.push({ fatal: false, play: String(e) }));
          if (player === 'hls') {
            if (!window.Hls || !Hls.isSupported()) return done(false, 'hls.js: no MediaSource');
            const hls = new Hls();
            hls.on(Hls.Events.ERROR, (_, d) => {
              errors.push({ fatal: d.fatal, type: d.type, details: d.details, reason: String(d.reason || d.error || '') });
              if (d.fatal) done(false, 'fatal hls.js error: ' + d.details);
            });
            hls.on(Hls.Events.MANIFEST_PARSED, play);
            hls.loadSource(url);
            hls.attachMedia(v);
          } else if (player === 'mpegts') {
            if (!window.mpegts || !mpegts.isSupported()) return done(false, 'mpegts.js: no MediaSource');
            const p = mpegts.createPlayer({ type: 'flv', url, isLive: false });
            p.on(mpegts.Events.ERROR, (type, details, info) => {
              errors.push({ fatal: true, type, details, reason: JSON.stringify(info || '') });
              done(false, 'mpegts.js error: ' + type + ' ' + details);
            });
            p.attachMediaElement(v);
            p.load();
            play();
          } else {
            v.src = url;
            play();
          }
        }),
      o.url,
      o.player,
      o.seconds,
      o.timeout * 1000,
    );
    result.console = console_lines.slice(-20);
    console.log(JSON.stringify(result));
    return result.ok ? 0 : 1;
  } finally {
    await browser.close();
  }
}

run(main);
