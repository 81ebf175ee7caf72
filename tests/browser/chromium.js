// Shared by play.js and page.js: their command-line options, Debian's headless Chromium
// (/usr/bin/chromium, or $CHROMIUM) through puppeteer-core, and the one-JSON-line exit.
'use strict';
const puppeteer = require('puppeteer-core');

// `--name value` options over `defaults` (a number default makes a number); the one bare
// argument is `url`, required.
function options(argv, defaults, usage) {
  const o = { url: null, ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const k = a.slice(2);
      const v = argv[++i];
      o[k] = typeof defaults[k] === 'number' ? Number(v) : v;
    } else {
      o.url = a;
    }
  }
  if (!o.url) throw new Error('usage: ' + usage);
  return o;
}

function launch() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--mute-audio', '--autoplay-policy=no-user-gesture-required'],
  });
}

// Runs `main` (resolving to an exit code); a harness failure is printed as the JSON line
// {"ok": false, "why": "harness: ..."} with exit status 2.
function run(main) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.log(JSON.stringify({ ok: false, why: 'harness: ' + String((e && e.stack) || e) }));
      process.exit(2);
    },
  );
}

module.exports = { options, launch, run };
