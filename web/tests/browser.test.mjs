// Courier Web in real headless Chromium against a running local cloud, with the `courier` CLI as
// the phone and as the peer:
//
//   1. Alice (CLI, primary) and Bob (CLI) register, and chat once. The page shows a link code
//      (QR and text); Alice approves it with `courier devices approve CODE`, which sends the page
//      her phone's history; the page shows it under "Synced from your phone".
//   2. Bob sends Alice a message: the page shows it, with the right text, in a chat with 1 unread.
//   3. The page replies: Bob's CLI decrypts it; the reply's tick goes sent -> delivered (Bob's
//      inbox acks) -> read (Bob opens the chat).
//   4. Bob creates a group with Alice and writes in it: the page shows the group and the message;
//      the page answers in the group and Bob's CLI decrypts it.
//   5. The page sends an image (upload progress shown): Bob's CLI downloads and decrypts it, byte
//      for byte.
//   6. Typing and presence ("online", "typing…" both ways), a reply, reactions and an edit from
//      the page (Bob's CLI decrypts each as courier-client's Content), the page deleting its
//      message (Bob gets messageDeleted and reads the tombstone) and Bob deleting his (live, and
//      while the page is offline: read on sync). Bob's device speaks the protocol directly for
//      what the CLI has no command for (rawDevice). A screenshot of the conversation goes to
//      docs/images/web-conversation.png.
//   7. The network drops (the page's socket is cut): Bob writes meanwhile; once the page is back
//      it reconnects by itself and shows the message.
//   Then: bad input (a malformed and an unknown phone number) gets a clear error; settings;
//   two-step verification (the phone sets a PIN, the page checks, changes and removes it); a
//   status post; disappearing messages (the page turns them on, Bob's device gets the event, a
//   message carries expiresAt and shows ⏱; on a cloud with a short test timer, messages leave
//   the page and IndexedDB at their expiry; Bob turns them off); a reload keeps the link, the
//   chats and the chat's timer; IndexedDB holds no plaintext; the phone-sized layout.
//   8. Everything the page sent (HTTP bodies, WebSocket frames, the upload) is searched for every
//      plaintext of the run: none may appear.
//
// Environment: COURIER_HTTP_URL (the local cloud, serving web/dist), COURIER_WS_URL,
// COURIER_BIN (the `courier` binary; default target/debug/courier),
// COURIER_DISAPPEARING_TEST_SECONDS (the cloud's DisappearingTestSeconds, if any), CHROMIUM (default
// /usr/bin/chromium), COURIER_SCREENSHOT (default web/test-results/web-conversation.png; "" for
// none).
// Run by tests/tests/web.rs (./dev test), or by hand against `./dev up`:
//   COURIER_HTTP_URL=http://127.0.0.1:3000 COURIER_WS_URL=ws://127.0.0.1:3001 npm test --prefix web

import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { createDecipheriv } from 'node:crypto';
import assert from 'node:assert/strict';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const HTTP = process.env.COURIER_HTTP_URL ?? 'http://127.0.0.1:3000';
const WS = process.env.COURIER_WS_URL ?? 'ws://127.0.0.1:3001';
const BIN = process.env.COURIER_BIN ?? join(ROOT, 'target/debug/courier');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// The committed docs/images/web-conversation.png is this screenshot, taken with
// COURIER_SCREENSHOT=docs/images/web-conversation.png (each run's differs: ids, times).
const SCREENSHOT = process.env.COURIER_SCREENSHOT ?? join(ROOT, 'web/test-results/web-conversation.png');
const WAIT = 30_000;
// The deployment's extra, short disappearing timer (the template's DisappearingTestSeconds, which
// tests/tests/web.rs sets on the cloud it starts): with it, a message is seen to disappear from
// the page at its expiry; without it (0, a deployment's default), that part is skipped.
const TEST_TIMER = Number(process.env.COURIER_DISAPPEARING_TEST_SECONDS ?? 0);

const started = Date.now();
const steps = [];
function step(name) {
  steps.push(name);
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${name}`);
}

// ---- the CLI ------------------------------------------------------------------------------------

function courier(config, args, { input } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      BIN,
      args,
      {
        env: { ...process.env, COURIER_HTTP_URL: HTTP, COURIER_WS_URL: WS, COURIER_CONFIG_DIR: config },
        timeout: 90_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`courier ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
        else resolvePromise(stdout);
      },
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

function freshPhone() {
  // Valid US numbers (no N11 exchange), random so runs sharing emulators do not collide.
  const areas = [415, 650, 212, 310, 617, 206];
  const exchanges = [234, 345, 456, 567, 678, 789, 823];
  const pick = (a) => a[Math.floor(Math.random() * a.length)];
  return `+1${pick(areas)}${pick(exchanges)}${String(Math.floor(Math.random() * 10000)).padStart(4, '0')}`;
}

async function codeFor(phone) {
  for (let i = 0; i < 50; i++) {
    const sms = await (await fetch(`${HTTP}/_local/outbox/sms`)).json();
    const mine = sms.filter((m) => m.phoneNumber === phone);
    const code = mine.length ? /\b(\d{6})\b/.exec(mine[mine.length - 1].message)?.[1] : undefined;
    if (code) return code;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no SMS code for ${phone}`);
}

async function cliUser(name) {
  const config = mkdtempSync(join(tmpdir(), `courier-web-${name}-`));
  const phone = freshPhone();
  await courier(config, ['register', phone]);
  await courier(config, ['verify', await codeFor(phone), '--device-name', `${name}-cli`]);
  return { name, config, phone };
}

/** Bob's inbox as JSON lines (it acknowledges delivery). */
async function inbox(user, saveDir) {
  const args = ['inbox', '--json', '--timeout', '40'];
  if (saveDir) args.push('--save-dir', saveDir);
  const out = await courier(user.config, args);
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/** The reply, reaction or edit a decrypted plaintext carries (courier-client's `Content`: the
 * mark U+0001, then JSON), or null for plain text. */
function contentOf(text) {
  if (typeof text !== 'string' || !text.startsWith('\u0001')) return null;
  return JSON.parse(text.slice(1));
}

/** Reads Bob's inbox until the lines read so far satisfy `pred` (given them all); returns them. */
async function inboxUntilAll(user, pred) {
  const seen = [];
  const until = Date.now() + WAIT;
  while (Date.now() < until) {
    seen.push(...(await inbox(user)));
    if (pred(seen)) return seen;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`not in ${user.name}'s inbox: ${JSON.stringify(seen).slice(0, 2000)}`);
}

/** Reads Bob's inbox until a message matching `pred` shows up. */
async function inboxUntil(user, pred, saveDir) {
  const seen = [];
  const until = Date.now() + WAIT;
  while (Date.now() < until) {
    const lines = await inbox(user, saveDir);
    seen.push(...lines);
    const hit = lines.find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`not in ${user.name}'s inbox: ${JSON.stringify(seen).slice(0, 2000)}`);
}

// ---- a device speaking the protocol itself ------------------------------------------------------

/**
 * A CLI user's device speaking the WebSocket protocol directly, for what the CLI has no command
 * for (typing, deleting, reading tombstones, its profile name): a WebSocket in a page of its own
 * browser context (not recorded with the page's traffic, not taken offline with it), opened with
 * a one-time connect ticket for the device's key. Events it receives are kept.
 */
async function rawDevice(browser, user) {
  const creds = JSON.parse(readFileSync(join(user.config, 'credentials.json'), 'utf8'));
  const r = await fetch(`${HTTP}/v1/connect-tickets`, {
    method: 'POST',
    headers: { authorization: `Bearer ${creds.apiKey}` },
  });
  assert.equal(r.status, 201, `a connect ticket for ${user.name}: ${r.status}`);
  const { ticket } = await r.json();
  const context = await browser.newContext();
  const p = await context.newPage();
  const sep = WS.includes('?') ? '&' : '?';
  await p.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        window.raw = { ws, events: [], waiting: new Map(), n: 0 };
        ws.onmessage = (e) => {
          const f = JSON.parse(e.data);
          if (f.type === 'response' && window.raw.waiting.has(f.requestId)) {
            window.raw.waiting.get(f.requestId)(f);
            window.raw.waiting.delete(f.requestId);
          } else if (f.type === 'event') {
            window.raw.events.push(f);
          }
        };
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error('the WebSocket failed'));
      }),
    `${WS}${sep}ticket=${encodeURIComponent(ticket)}`,
  );
  return {
    userId: creds.userId,
    async request(action, params = {}) {
      const f = await Promise.race([
        p.evaluate(
          ([action, params]) =>
            new Promise((resolve) => {
              const requestId = `raw-${++window.raw.n}`;
              window.raw.waiting.set(requestId, resolve);
              window.raw.ws.send(JSON.stringify({ action, requestId, ...params }));
            }),
          [action, params],
        ),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`${action}: no answer`)), WAIT)),
      ]);
      if (!f.ok) throw new Error(`${user.name}'s ${action} was refused: ${JSON.stringify(f.error)}`);
      return f.result;
    },
    /** Waits for an event matching `pred`. */
    async event(pred, what) {
      const until = Date.now() + WAIT;
      let events = [];
      while (Date.now() < until) {
        events = await p.evaluate(() => window.raw.events);
        const hit = events.find(pred);
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${user.name} never got ${what}: ${JSON.stringify(events).slice(0, 2000)}`);
    },
    /** Every message of a session, from the start (tombstones and system records included). */
    async readAll(sessionId) {
      const all = [];
      let lastMsgId = null;
      for (;;) {
        const page = await this.request('readNewMessages', { sessionId, lastMsgId, limit: 100 });
        all.push(...page.messages);
        if (!page.hasMore || !page.messages.length) return all;
        lastMsgId = page.messages[page.messages.length - 1].msgId;
      }
    },
    close: () => context.close(),
  };
}

// ---- what the page keeps ------------------------------------------------------------------------

/** The page's chats as it keeps them in IndexedDB: the `local` record opened with the state key
 * beside it (`CWL1` || nonce || AES-256-GCM, courier-client's `crypto::sealed`), as JSON text. */
async function keptChats(page) {
  const [key, sealed] = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('courier-web');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const tx = req.result.transaction('records', 'readonly');
          const store = tx.objectStore('records');
          const k = store.get('stateKey');
          const l = store.get('local');
          tx.oncomplete = () => resolve([Array.from(k.result), Array.from(l.result)]);
        };
      }),
  );
  const bytes = Buffer.from(sealed);
  assert.equal(bytes.subarray(0, 4).toString('latin1'), 'CWL1');
  const decipher = createDecipheriv('aes-256-gcm', Buffer.from(key), bytes.subarray(4, 16));
  decipher.setAAD(Buffer.from('courier-web-local-v1'));
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  return Buffer.concat([decipher.update(bytes.subarray(16, bytes.length - 16)), decipher.final()]).toString('utf8');
}

// ---- a PNG with a secret inside -----------------------------------------------------------------

function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

function png(secret) {
  const w = 96, hgt = 64;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(hgt, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < hgt; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      row[1 + x * 3] = 0 + ((x * 2) & 0xff);
      row[2 + x * 3] = 128 + y;
      row[3 + x * 3] = 105;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('tEXt', Buffer.from(`Comment\0${secret}`, 'latin1')),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- the run ------------------------------------------------------------------------------------

const nonce = Math.random().toString(36).slice(2, 8);
const texts = {
  beforeLink: `Before the browser was linked ${nonce}: bring the maps`,
  beforeLinkReply: `The phone answered before the link ${nonce}`,
  fromCli: `Hello from the phone ${nonce}: la réunion est à 15 h`,
  reply: `Hi back from the browser ${nonce}`,
  groupFromCli: `Group hello ${nonce} from Bob`,
  groupReply: `Group reply from the browser ${nonce}`,
  caption: `Picture caption ${nonce}`,
  whileOffline: `Sent while the browser was offline ${nonce}`,
  afterReload: `Sent after the browser reloaded ${nonce}`,
  status: `Working from the browser today ${nonce}`,
  bobCaption: `Bob's picture ${nonce}`,
  ownGroup: `Hello from the group the browser made ${nonce}`,
  imageSecret: `image-secret-${nonce}-do-not-leak`,
  quoteReply: `Quoting you from the browser ${nonce}`,
  typo: `See you at 5 ${nonce}`,
  edited: `See you at 6 ${nonce}, sorry`,
  toDelete: `Wrong chat, deleting this ${nonce}`,
  bobOops: `Bob's message he takes back ${nonce}`,
  bobOopsOffline: `Bob's second message he takes back ${nonce}`,
  toBlocked: `Still writing to you although you are blocked ${nonce}`,
  whileBlocked: `Bob writing while blocked ${nonce}`,
  groupWhileBlocked: `Bob in the group while blocked ${nonce}`,
  afterUnblock: `Bob after the unblock ${nonce}`,
  spam: `Win a prize, send me your code ${nonce}`,
  underTimer: `Sent while disappearing messages are on ${nonce}`,
  vanishing: `This one disappears in seconds ${nonce}`,
  bobVanishing: `Bob's message that disappears in seconds ${nonce}`,
  afterTimerOff: `Sent after disappearing messages were turned off ${nonce}`,
};
const BOB_NAME = 'Bob';
const image = png(texts.imageSecret);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox'],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT);

// Everything the page sends.
const sent = [];
page.on('request', (r) => {
  const body = r.postDataBuffer();
  sent.push({ what: `${r.method()} ${r.url()}`, body: body ?? Buffer.alloc(0) });
});
// The WebSocket URLs the page opened, and the API keys it sent in headers (connect tickets).
const wsUrls = [];
const keysInHeaders = new Set();
page.on('request', (r) => {
  const auth = r.headers()['authorization'];
  if (auth) keysInHeaders.add(auth.replace(/^Bearer /, ''));
});
page.on('websocket', (ws) => {
  wsUrls.push(ws.url());
  ws.on('framesent', (f) => sent.push({ what: `ws ${ws.url()}`, body: Buffer.from(f.payload) }));
});
const consoleLines = [];
page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

let failed = false;
try {
  step('register Alice (primary) and Bob with the CLI');
  const [alice, bob] = await Promise.all([cliUser('alice'), cliUser('bob')]);
  const aliceId = JSON.parse(readFileSync(join(alice.config, 'credentials.json'), 'utf8')).userId;
  // A profile name, so the page shows Bob by name (the CLI has no command for it).
  const bobSetup = await rawDevice(browser, bob);
  await bobSetup.request('updateSettings', { display: { name: BOB_NAME } });
  await bobSetup.close();

  step("before the page is linked, Alice's phone has a chat with Bob in its history");
  await courier(bob.config, ['send', alice.phone, texts.beforeLink]);
  await inboxUntil(alice, (l) => l.text === texts.beforeLink);
  // Read on the phone (so it is not unread on the page), and answered.
  await courier(alice.config, ['chat', bob.phone], { input: '' });
  await courier(alice.config, ['send', bob.phone, texts.beforeLinkReply]);

  step('open Courier Web: it shows a link code as text and as a QR code');
  const pageResponse = await page.goto(`${HTTP}/`);
  // The page comes with a strict Content-Security-Policy (docs/security.md item 15); every step
  // below runs under it, and the end checks that nothing was refused.
  const csp = pageResponse.headers()['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'none'/, `a strict CSP: ${csp}`);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/, `scripts from the page's origin only: ${csp}`);
  const codeEl = page.locator('#link-code');
  await codeEl.filter({ hasText: /\S/ }).waitFor();
  const code = (await codeEl.textContent()).trim();
  assert.match(code, /^\S{4,}$/, `a link code: ${code}`);
  const qrDrawn = await page.$eval('#link-qr', (c) => c.width > 0 && c.toDataURL().length > 1000);
  assert.ok(qrDrawn, 'the QR code is drawn');
  assert.equal(await page.locator('#link-command').textContent(), `courier devices approve ${code}`);

  step('Alice approves the link with the CLI');
  const approved = await courier(alice.config, ['devices', 'approve', code]);
  assert.match(approved, /approved/);
  // The phone waits for the page's keys, then sends it its history, encrypted.
  assert.match(approved, /sent 2 messages in 1 chat to the new device/, approved);
  await page.waitForSelector('#app[data-synced="true"]');
  assert.equal(await page.locator('#conn-state').textContent(), 'Online');
  const devices = await courier(alice.config, ['devices', 'list']);
  assert.match(devices, /web/i, `the web device is listed: ${devices}`);

  step('Bob sends Alice a message: the page shows it, unread, then opened');
  await courier(bob.config, ['send', alice.phone, texts.fromCli]);
  const chatButton = page.locator('button.chat', { hasText: texts.fromCli });
  await chatButton.waitFor();
  assert.equal(await chatButton.locator('.unread').textContent(), '1', 'one unread message');
  await chatButton.click();
  const received = page.locator('li.message:not(.mine) .text', { hasText: texts.fromCli });
  await received.waitFor();
  assert.equal(await received.textContent(), texts.fromCli);
  await page.locator('button.chat .unread').waitFor({ state: 'detached' });

  step('the chat holds the history from the phone, under "Synced from your phone"');
  const divider = page.locator('li.synced-divider');
  await divider.waitFor();
  assert.equal(await divider.textContent(), 'Synced from your phone');
  await page.locator('li.message.synced:not(.mine) .text', { hasText: texts.beforeLink }).waitFor();
  await page.locator('li.message.synced.mine .text', { hasText: texts.beforeLinkReply }).waitFor();
  // In order, under the divider; what came after the link is not marked.
  const order = await page.$$eval('ol.messages > li', (lis) =>
    lis.map((li) => (li.classList.contains('synced-divider') ? 'divider' : li.classList.contains('synced') ? 'synced' : 'live')),
  );
  assert.deepEqual(order.slice(0, 3), ['divider', 'synced', 'synced'], order.join(' '));
  assert.equal(await page.locator('li.message.synced', { hasText: texts.fromCli }).count(), 0);
  // For tests/tests/web.rs: what the local S3 and DynamoDB must not hold in clear.
  console.log(`SYNCED ${JSON.stringify([texts.beforeLink, texts.beforeLinkReply])}`);

  step('the page replies; Bob decrypts it; ticks go sent -> delivered -> read');
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(texts.reply);
  await page.keyboard.press('Enter');
  const replyTick = page.locator('li.message.mine', { hasText: texts.reply }).locator('.tick');
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('li.message.mine')].some((li) => li.textContent.includes(t) && li.querySelector('.tick')?.dataset.status === 'sent'),
    texts.reply,
  );
  const ticks = ['sent'];
  const got = await inboxUntil(bob, (l) => l.text === texts.reply);
  assert.equal(got.text, texts.reply, 'Bob decrypted the reply');
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('li.message.mine')].some((li) => li.textContent.includes(t) && ['delivered', 'read'].includes(li.querySelector('.tick')?.dataset.status)),
    texts.reply,
  );
  ticks.push(await replyTick.getAttribute('data-status'));
  await courier(bob.config, ['chat', alice.phone], { input: '' });
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('li.message.mine')].some((li) => li.textContent.includes(t) && li.querySelector('.tick')?.dataset.status === 'read'),
    texts.reply,
  );
  ticks.push(await replyTick.getAttribute('data-status'));
  assert.deepEqual(ticks, ['sent', 'delivered', 'read']);
  assert.equal(await replyTick.getAttribute('aria-label'), 'read');

  step('Bob creates a group with Alice and writes in it: the page joins the conversation');
  const groupName = `Web test ${nonce}`;
  const groupId = (await courier(bob.config, ['group', 'create', groupName, alice.phone])).trim();
  assert.match(groupId, /^g_/);
  await courier(bob.config, ['send', '--session', groupId, texts.groupFromCli]);
  const groupButton = page.locator('button.chat', { hasText: groupName });
  await groupButton.waitFor();
  await groupButton.click();
  await page.locator('li.message:not(.mine) .text', { hasText: texts.groupFromCli }).waitFor();
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(texts.groupReply);
  await page.getByRole('button', { name: 'Send' }).click();
  const groupGot = await inboxUntil(bob, (l) => l.text === texts.groupReply);
  assert.equal(groupGot.sessionId, groupId, 'the reply is in the group');

  step('the page creates a group with Bob and writes in it; Bob reads it; the page may not set Bob\'s group\'s disappearing timer (FORBIDDEN, said) and leaves the group');
  await page.locator('#new-group').click();
  await page.getByLabel('Group name').fill(`Alice's group ${nonce}`);
  await page.getByLabel(/Members: phone numbers/).fill(bob.phone);
  await page.getByRole('button', { name: 'Create group' }).click();
  await page.locator('#chat-title', { hasText: `Alice's group ${nonce}` }).waitFor();
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(texts.ownGroup);
  await page.keyboard.press('Enter');
  const ownGroupGot = await inboxUntil(bob, (l) => l.text === texts.ownGroup);
  assert.match(ownGroupGot.sessionId, /^g_/);
  assert.notEqual(ownGroupGot.sessionId, groupId);
  await page.locator('button.chat', { hasText: groupName }).click();
  // Alice is no admin of Bob's group: turning on disappearing messages is refused, said, and
  // changes nothing.
  await page.getByLabel('Disappearing messages').selectOption('604800');
  await page.locator('#chat-note', { hasText: 'Only group admins can change disappearing messages. Nothing was changed.' }).waitFor();
  assert.equal(await page.getByLabel('Disappearing messages').inputValue(), '0', 'the control is back to Off');
  assert.ok(await page.locator('#timer-badge').isHidden(), 'no timer badge');
  assert.equal(await page.locator('li.system', { hasText: 'disappearing' }).count(), 0, 'no line');
  await page.locator('#group-info').click();
  await page.locator('ul.members li', { hasText: '(admin)' }).waitFor();
  assert.equal(await page.locator('ul.members li').count(), 2);
  await page.locator('#leave-group').click();
  await page.locator('button.chat', { hasText: groupName }).waitFor({ state: 'detached' });
  const info = JSON.parse(await courier(bob.config, ['group', 'info', groupId, '--json']));
  assert.equal(info.members.length, 1, `only Bob is left: ${JSON.stringify(info.members)}`);

  step('the page sends an image; Bob downloads and decrypts it');
  await page.locator('button.chat', { hasText: texts.reply }).click();
  await page.locator('li.message .text', { hasText: texts.fromCli }).waitFor();
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(texts.caption);
  const progressSeen = page.waitForSelector('#upload-progress:not([hidden])', { state: 'attached' });
  await page.setInputFiles('#file-input', { name: 'pixel.png', mimeType: 'image/png', buffer: image });
  await progressSeen;
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('li.message.mine')].some((li) => li.textContent.includes(t) && ['sent', 'delivered', 'read'].includes(li.querySelector('.tick')?.dataset.status)),
    texts.caption,
  );
  const saveDir = mkdtempSync(join(tmpdir(), 'courier-web-bob-files-'));
  const fileLine = await inboxUntil(bob, (l) => l.file && l.file.caption === texts.caption, saveDir);
  assert.equal(fileLine.file.contentType, 'image/png');
  assert.equal(fileLine.file.size, image.length);
  const saved = fileLine.savedTo ?? join(saveDir, readdirSync(saveDir)[0]);
  assert.ok(Buffer.compare(readFileSync(saved), image) === 0, 'Bob has the image byte for byte');
  // Bob's inbox marked it delivered: the page shows the image with two ticks.
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('li.message.mine')].some((li) => li.textContent.includes(t) && ['delivered', 'read'].includes(li.querySelector('.tick')?.dataset.status)),
    texts.caption,
  );

  step('Bob sends an image: the page downloads, decrypts and shows it');
  const bobImage = png(`bob-image-${nonce}`);
  const bobFile = join(mkdtempSync(join(tmpdir(), 'courier-web-bob-send-')), 'from-bob.png');
  writeFileSync(bobFile, bobImage);
  await courier(bob.config, ['send', alice.phone, '--file', bobFile, texts.bobCaption]);
  const shown = page.locator(`li.message:not(.mine) img.media[alt="${texts.bobCaption}"]`);
  await shown.waitFor();
  await page.waitForFunction(
    (alt) => [...document.querySelectorAll('img.media')].some((i) => i.alt === alt && i.complete && i.naturalWidth === 96 && i.naturalHeight === 64),
    texts.bobCaption,
  );

  step('Bob is online and types: the page\'s chat header shows "online", then "typing…", then "online" again when he stops');
  const bobRaw = await rawDevice(browser, bob);
  const bobChat = page.locator('button.chat', { has: page.locator('.name', { hasText: new RegExp(`^${BOB_NAME}$`) }) });
  assert.equal(await bobChat.count(), 1, 'the chat with Bob is listed by his name');
  await bobChat.click();
  const presence = page.locator('#chat-presence');
  await presence.filter({ hasText: /^online$/ }).waitFor();
  const directId = await bobChat.getAttribute('data-session');
  await bobRaw.request('sendTyping', { sessionId: directId, typing: true });
  await presence.filter({ hasText: /^typing…$/ }).waitFor();
  await bobRaw.request('sendTyping', { sessionId: directId, typing: false });
  await presence.filter({ hasText: /^online$/ }).waitFor();

  step('the page types and replies to Bob\'s message: Bob sees Alice typing, then stopping; the reply shows the quote; Bob decrypts a reply to that message');
  const bobsText = page.locator('li.message:not(.mine)', { has: page.locator('.text', { hasText: texts.fromCli }) });
  const bobsTextId = await bobsText.getAttribute('data-msg');
  const composer = page.getByRole('textbox', { name: 'Message', exact: true });
  await composer.fill('Quo');
  await bobRaw.event((e) => e.event === 'typing' && e.userId === aliceId && e.typing === true && e.sessionId === directId, "Alice's typing");
  await composer.fill('');
  await bobRaw.event((e) => e.event === 'typing' && e.userId === aliceId && e.typing === false, 'Alice stopping');
  await bobsText.hover();
  await bobsText.getByRole('button', { name: 'Reply' }).click();
  await page.locator('#composer-context .quote-text', { hasText: texts.fromCli }).waitFor();
  await composer.fill(texts.quoteReply);
  await page.keyboard.press('Enter');
  const quoting = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.quoteReply }) });
  await quoting.locator(`blockquote.quote[data-quotes="${bobsTextId}"] .quote-text`, { hasText: texts.fromCli }).waitFor();
  assert.equal(await quoting.locator('.quote-sender').textContent(), BOB_NAME);
  assert.ok(await page.locator('#composer-context').isHidden(), 'the composer no longer quotes');
  await inboxUntil(bob, (l) => {
    const c = contentOf(l.text);
    return c?.t === 'reply' && c.to === bobsTextId && c.text === texts.quoteReply;
  });

  step('the page reacts to Bob\'s picture, takes the reaction back and chooses another: one chip; Bob decrypts the three');
  const bobsPicture = page.locator('li.message:not(.mine)', { has: page.locator(`img.media[alt="${texts.bobCaption}"]`) });
  const bobsPictureId = await bobsPicture.getAttribute('data-msg');
  const react = async (emoji) => {
    await bobsPicture.hover();
    await bobsPicture.getByRole('button', { name: 'React', exact: true }).click();
    await bobsPicture.getByRole('button', { name: `React with ${emoji}` }).click();
  };
  const chips = bobsPicture.locator('.reactions .chip');
  await react('👍');
  await chips.filter({ hasText: '👍' }).waitFor();
  await react('👍'); // the same again removes it
  await chips.first().waitFor({ state: 'detached' });
  await react('❤️');
  await chips.filter({ hasText: '❤️' }).waitFor();
  assert.equal(await chips.count(), 1, 'one reaction per person');
  assert.match(await chips.first().getAttribute('aria-label'), /❤️ from You/);
  await inboxUntilAll(bob, (lines) => {
    const r = lines.map((l) => contentOf(l.text)).filter((c) => c?.t === 'reaction' && c.to === bobsPictureId);
    return JSON.stringify(r.map((c) => c.emoji)) === JSON.stringify(['👍', '', '❤️']);
  });

  step('the page edits its own message: "edited" and the new text; Bob decrypts the edit');
  await composer.fill(texts.typo);
  await page.keyboard.press('Enter');
  const typo = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.typo }) });
  await typo.locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]').waitFor();
  const typoId = await typo.getAttribute('data-msg');
  await typo.hover();
  await typo.getByRole('button', { name: 'Edit' }).click();
  assert.equal(await composer.inputValue(), texts.typo, 'the composer holds the text to edit');
  await composer.fill(texts.edited);
  await page.keyboard.press('Enter');
  const editedMsg = page.locator(`li.message.mine[data-msg="${typoId}"]`);
  await editedMsg.locator('.text', { hasText: texts.edited }).waitFor();
  assert.equal(await editedMsg.locator('.edited').textContent(), 'edited');
  assert.equal(await page.locator('li.message .text', { hasText: texts.typo }).count(), 0, 'the old text is gone');
  await inboxUntil(bob, (l) => {
    const c = contentOf(l.text);
    return c?.t === 'edit' && c.to === typoId && c.text === texts.edited;
  });

  step('the page deletes one of its messages for everyone: "This message was deleted"; Bob gets messageDeleted and reads a tombstone and the record');
  await composer.fill(texts.toDelete);
  await page.keyboard.press('Enter');
  const doomed = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.toDelete }) });
  await doomed.locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]').waitFor();
  const doomedId = await doomed.getAttribute('data-msg');
  page.once('dialog', (d) => d.accept());
  await doomed.hover();
  await doomed.getByRole('button', { name: 'Delete' }).click();
  const doomedNow = page.locator(`li.message.mine[data-msg="${doomedId}"]`);
  await doomedNow.locator('.deleted', { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await page.locator('li.message .text', { hasText: texts.toDelete }).count(), 0, 'its text is gone');
  const deletedEvent = await bobRaw.event((e) => e.event === 'messageDeleted' && e.msgId === doomedId, 'the messageDeleted event');
  assert.equal(deletedEvent.by, aliceId);
  const bobReads = await bobRaw.readAll(directId);
  const tombstone = bobReads.find((m) => m.msgId === doomedId);
  assert.equal(tombstone?.type, 'deleted', `a tombstone: ${JSON.stringify(tombstone)}`);
  assert.equal(tombstone.payload ?? null, null, 'no payload in the tombstone');
  assert.ok(
    bobReads.some((m) => m.type === 'system' && JSON.parse(m.payload).update === 'messageDeleted' && JSON.parse(m.payload).msgId === doomedId),
    'the deletion record',
  );

  step('Bob deletes one of his messages: the page shows "This message was deleted", live');
  await courier(bob.config, ['send', alice.phone, texts.bobOops]);
  const oops = page.locator('li.message:not(.mine)', { has: page.locator('.text', { hasText: texts.bobOops }) });
  await oops.waitFor();
  const oopsId = await oops.getAttribute('data-msg');
  await bobRaw.request('deleteMessage', { sessionId: directId, msgId: oopsId });
  await page.locator(`li.message[data-msg="${oopsId}"] .deleted`, { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await page.locator('li.message .text', { hasText: texts.bobOops }).count(), 0, 'its text is gone');
  // Bob's message shows no controls of the page's own: no Edit or Delete on someone else's.
  assert.equal(await bobsText.getByRole('button', { name: 'Delete' }).count(), 0);

  step('screenshot of the conversation (Bob typing)');
  await bobRaw.request('sendTyping', { sessionId: directId, typing: true });
  await presence.filter({ hasText: /^typing…$/ }).waitFor();
  await page.mouse.move(0, 0);
  await composer.focus();
  if (SCREENSHOT) {
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  }
  await bobRaw.request('sendTyping', { sessionId: directId, typing: false });
  // Bob sends a message he deletes while the page is offline (next step).
  await courier(bob.config, ['send', alice.phone, texts.bobOopsOffline]);
  const oops2 = page.locator('li.message:not(.mine)', { has: page.locator('.text', { hasText: texts.bobOopsOffline }) });
  await oops2.waitFor();
  const oops2Id = await oops2.getAttribute('data-msg');

  step('the network drops: the page reconnects by itself and shows what came meanwhile');
  await context.setOffline(true);
  // Offline emulation keeps an open socket; a real drop closes it: do what the drop does.
  await page.evaluate(() => window.dispatchEvent(new Event('offline')));
  await page.waitForFunction(() => document.querySelector('#conn-state')?.textContent !== 'Online');
  await courier(bob.config, ['send', alice.phone, texts.whileOffline]);
  await bobRaw.request('deleteMessage', { sessionId: directId, msgId: oops2Id });
  await bobRaw.close();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await page.locator('li.message .text', { hasText: texts.whileOffline }).count(), 0, 'nothing arrives while offline');
  assert.equal(await page.locator('li.message .text', { hasText: texts.bobOopsOffline }).count(), 1, 'nor the deletion');
  await context.setOffline(false);
  await page.locator('li.message:not(.mine) .text', { hasText: texts.whileOffline }).waitFor();
  assert.equal(await page.locator('#conn-state').textContent(), 'Online');
  // The deletion, read on sync from its record: the message loses its text, no line is added.
  await page.locator(`li.message[data-msg="${oops2Id}"] .deleted`, { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await page.locator('li.message .text', { hasText: texts.bobOopsOffline }).count(), 0);
  assert.equal(await page.locator('li.system').count(), 0, 'a deletion is no line of its own in the chat');

  step('with none of Bob\'s devices connected, the chat header says when he was last seen');
  // Read when the chat opens: opened again until the server has recorded Bob's disconnect.
  let seenText = '';
  for (let i = 0; i < 15 && !/^last seen /.test(seenText); i++) {
    await page.locator('button.chat', { hasText: texts.whileOffline }).click();
    await presence.filter({ hasText: /^last seen / }).waitFor({ timeout: 2000 }).catch(() => {});
    seenText = await presence.textContent();
  }
  assert.match(seenText, /^last seen (today|.+) at \d/, `Bob's last seen: ${seenText}`);

  step('the safety number with Bob is the one Alice\'s phone shows');
  await page.locator('button.chat', { hasText: texts.whileOffline }).click();
  await page.locator('#verify').click();
  const webNumber = (await page.locator('#safety-number').textContent()).replace(/\s+/g, '');
  const cliSafety = await courier(alice.config, ['verify-contact', bob.phone]);
  const cliNumber = /Safety number[^\n]*\n((?:\s+[\d ]+\n)+)/.exec(cliSafety)?.[1].replace(/\s+/g, '');
  assert.match(webNumber, /^\d{60}$/, `60 digits: ${webNumber}`);
  assert.equal(webNumber, cliNumber, `the web and the CLI agree:\n${cliSafety}`);
  assert.equal(await page.locator('#accept-identity').count(), 0, 'Bob\'s keys are the pinned ones');
  await page.keyboard.press('Escape');

  step('bad input gets a clear error and changes nothing');
  await page.locator('#new-chat').click();
  await page.getByLabel(/Phone number/).fill('12345');
  await page.getByRole('button', { name: 'Start chat' }).click();
  const chatError = page.locator('#new-chat-form [role=status]', { hasText: 'Error' });
  await chatError.waitFor();
  assert.match(await chatError.textContent(), /BAD_REQUEST|phone/i);
  await page.getByLabel(/Phone number/).fill('+14155550000');
  await page.getByRole('button', { name: 'Start chat' }).click();
  await page.locator('#new-chat-form [role=status]', { hasText: /NOT_FOUND/ }).waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#panel').waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#conn-state').textContent(), 'Online', 'the connection survives bad input');

  step('profile and privacy settings are saved on the server');
  await page.locator('#settings-tab').click();
  await page.getByLabel('Name', { exact: true }).fill(`Alice on the web ${nonce}`);
  await page.getByLabel('Last seen').selectOption('contacts');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#settings-form [role=status]', { hasText: `Saved as Alice on the web ${nonce}` }).waitFor();
  await page.getByRole('button', { name: 'Close' }).click();
  await page.locator('#settings-tab').click();
  await page.locator('#settings-form').waitFor();
  assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), `Alice on the web ${nonce}`);
  assert.equal(await page.getByLabel('Last seen').inputValue(), 'contacts');
  await page.getByRole('button', { name: 'Close' }).click();

  step('two-step verification: the phone sets a PIN; the page checks a wrong and the right one, changes it with the current one and removes it; the phone sees each change');
  // Six random digits each, all different (the PIN budget allows 5 wrong a day per account;
  // this step spends 3).
  const pins = new Set();
  while (pins.size < 3) pins.add(String(Math.floor(Math.random() * 1e6)).padStart(6, '0'));
  const [firstPin, newPin, wrongPin] = [...pins];
  const pinDir = mkdtempSync(join(tmpdir(), 'courier-web-pins-'));
  const pinFile = (name, pin) => {
    const f = join(pinDir, name);
    writeFileSync(f, `${pin}\n`);
    return f;
  };
  assert.match(await courier(alice.config, ['pin', 'set', '--pin-file', pinFile('first', firstPin)]), /Two-step verification is on/);
  await page.locator('#settings-tab').click();
  await page.locator('#pin-state[data-enabled="true"]').waitFor();
  const checkForm = page.locator('#pin-check-form');
  await checkForm.getByLabel('Your PIN').fill(wrongPin);
  await checkForm.getByRole('button', { name: 'Check PIN' }).click();
  await checkForm.locator('[role=status][data-result="wrong"]', { hasText: 'Wrong' }).waitFor();
  await checkForm.getByLabel('Your PIN').fill(firstPin);
  await checkForm.getByRole('button', { name: 'Check PIN' }).click();
  await checkForm.locator('[role=status][data-result="correct"]', { hasText: 'Correct' }).waitFor();
  const changeForm = page.locator('#pin-change-form');
  // A wrong current PIN changes nothing, and says so.
  await changeForm.getByLabel('Current PIN').fill(wrongPin);
  await changeForm.getByLabel('New PIN').fill(newPin);
  await changeForm.getByRole('button', { name: 'Change PIN' }).click();
  await changeForm.locator('[role=status]', { hasText: 'not your current PIN' }).waitFor();
  assert.match(await courier(alice.config, ['pin', 'check', '--pin-file', pinFile('first-again', firstPin)]), /Correct/);
  // With the current PIN it changes: the phone finds the new PIN right and the old one wrong.
  await changeForm.getByLabel('Current PIN').fill(firstPin);
  await changeForm.getByLabel('New PIN').fill(newPin);
  await changeForm.getByRole('button', { name: 'Change PIN' }).click();
  await changeForm.locator('[role=status]', { hasText: 'PIN changed' }).waitFor();
  assert.match(await courier(alice.config, ['pin', 'check', '--pin-file', pinFile('new', newPin)]), /Correct/);
  await assert.rejects(courier(alice.config, ['pin', 'check', '--pin-file', pinFile('old', firstPin)]), /wrong: that is not your registration PIN/);
  // Removing needs the current PIN too; then the phone finds two-step verification off.
  const removeForm = page.locator('#pin-remove-form');
  await removeForm.getByLabel('Current PIN').fill(newPin);
  await removeForm.getByRole('button', { name: 'Remove PIN' }).click();
  await page.locator('#pin-state[data-enabled="false"]').waitFor();
  await assert.rejects(courier(alice.config, ['pin', 'check', '--pin-file', pinFile('gone', newPin)]), /two-step verification is off/);
  await page.getByRole('button', { name: 'Close' }).click();

  step('a status post is encrypted, posted and listed');
  await page.locator('#status-tab').click();
  await page.getByLabel('Your status (visible 24 hours)').fill(texts.status);
  await page.getByRole('button', { name: 'Post status' }).click();
  await page.locator('.statuses .status-text', { hasText: texts.status }).waitFor();
  await page.getByRole('button', { name: 'Close' }).click();

  step('the page turns on disappearing messages (24 hours) with Bob: its line and the ⏱ 24h badge; Bob\'s device gets the disappearingTimer event; a message sent after shows ⏱ and carries expiresAt');
  const bobTimer = await rawDevice(browser, bob);
  await bobChat.click();
  const timerControl = page.getByLabel('Disappearing messages');
  assert.equal(await timerControl.inputValue(), '0', 'off to begin with');
  await timerControl.selectOption('86400');
  await page.locator('li.system', { hasText: /^You turned on disappearing messages\. New messages will disappear after 24 hours\.$/ }).waitFor();
  const timerBadge = page.locator('#timer-badge');
  await timerBadge.filter({ hasText: /^24h$/ }).waitFor();
  assert.equal(await timerBadge.getAttribute('title'), 'Disappearing messages: 24 hours');
  const timerEvent = await bobTimer.event(
    (e) => e.event === 'disappearingTimer' && e.sessionId === directId && e.seconds === 86400,
    'the disappearingTimer event',
  );
  assert.equal(timerEvent.by, aliceId, 'Alice set it');
  assert.deepEqual(JSON.parse(timerEvent.message.payload), { update: 'disappearingTimer', seconds: 86400, by: aliceId });
  await composer.fill(texts.underTimer);
  await page.keyboard.press('Enter');
  const timed = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.underTimer }) });
  await timed.locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]').waitFor();
  assert.equal(await timed.locator('.expires').getAttribute('aria-label'), 'Disappearing message');
  const timedId = await timed.getAttribute('data-msg');
  // The page keeps the expiry the server stored (its sendMessage reply), 24 hours after sentAt.
  const timedStored = (await bobTimer.readAll(directId)).find((m) => m.msgId === timedId);
  assert.ok(timedStored?.expiresAt, `the message carries expiresAt: ${JSON.stringify(timedStored)}`);
  assert.equal(Date.parse(timedStored.expiresAt) - Date.parse(timedStored.sentAt), 86_400_000);
  assert.equal(Date.parse(await timed.getAttribute('data-expires')), Date.parse(timedStored.expiresAt));
  await inboxUntil(bob, (l) => l.text === texts.underTimer);

  if (TEST_TIMER) {
    step(`Bob sets the test deployment's ${TEST_TIMER}-second timer: his line; the page's message and Bob's disappear at their expiry, from the page and from IndexedDB`);
    await bobTimer.request('setDisappearingTimer', { sessionId: directId, seconds: TEST_TIMER });
    await page
      .locator('li.system', { hasText: `${BOB_NAME} turned on disappearing messages. New messages will disappear after ${TEST_TIMER} seconds.` })
      .waitFor();
    await timerBadge.filter({ hasText: `${TEST_TIMER}s` }).waitFor();
    await composer.fill(texts.vanishing);
    await page.keyboard.press('Enter');
    const bobSent = courier(bob.config, ['send', alice.phone, texts.bobVanishing]);
    const vanishing = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.vanishing }) });
    const bobVanishing = page.locator('li.message:not(.mine)', { has: page.locator('.text', { hasText: texts.bobVanishing }) });
    await vanishing.locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]').waitFor();
    await bobVanishing.locator('.expires').waitFor();
    await bobSent;
    const gone = [];
    for (const li of [vanishing, bobVanishing]) {
      gone.push({ msgId: await li.getAttribute('data-msg'), expiresAt: Date.parse(await li.getAttribute('data-expires')) });
    }
    assert.equal(gone[0].expiresAt - Date.parse(await vanishing.locator('time').getAttribute('datetime')), TEST_TIMER * 1000);
    // Kept (sealed) in IndexedDB until then. (A chat's read cursor may go on naming an id: the
    // messages are what must go.)
    const keptIds = (json) => new Set(JSON.parse(json).chats.flatMap((c) => c.messages.map((m) => m.msgId)));
    await page.waitForTimeout(700);
    const before = await keptChats(page);
    assert.ok(keptIds(before).has(gone[0].msgId) && before.includes(texts.vanishing), 'IndexedDB keeps the message until it expires');
    for (const [i, g] of gone.entries()) {
      await page.locator(`li.message[data-msg="${g.msgId}"]`).waitFor({ state: 'detached', timeout: TEST_TIMER * 1000 + WAIT });
      assert.ok(Date.now() >= g.expiresAt, `message ${i} went at its expiry, not before`);
    }
    assert.equal(await page.locator('li.message .text', { hasText: texts.vanishing }).count(), 0);
    // The save that follows the expiry (at most half a second later) no longer holds either.
    let after = before;
    for (let i = 0; i < 50 && gone.some((g) => keptIds(after).has(g.msgId)); i++) {
      await page.waitForTimeout(200);
      after = await keptChats(page);
    }
    for (const g of gone) assert.ok(!keptIds(after).has(g.msgId), `${g.msgId} is gone from IndexedDB`);
    assert.ok(!after.includes(texts.vanishing) && !after.includes(texts.bobVanishing), 'their texts are gone from IndexedDB');
    assert.ok(after.includes(texts.underTimer), 'the message with 24 hours to go is kept');
  }

  step('after a reload the browser is still linked, keeps its chats and the chat\'s disappearing timer (from its last record)');
  await page.reload();
  await page.waitForSelector('#app[data-synced="true"]');
  // By name: its last message is no longer the one from while the page was offline.
  await bobChat.click();
  await page.locator('li.message.mine .text', { hasText: texts.reply }).waitFor();
  await timerBadge.filter({ hasText: TEST_TIMER ? `${TEST_TIMER}s` : '24h' }).waitFor();
  assert.equal(await page.getByLabel('Disappearing messages').inputValue(), String(TEST_TIMER || 86400));
  await page.locator('li.message.mine .expires').first().waitFor();

  step('Bob turns disappearing messages off: the page shows his line, the badge goes; a new message has no ⏱ and no expiresAt');
  await bobTimer.request('setDisappearingTimer', { sessionId: directId, seconds: 0 });
  await page.locator('li.system', { hasText: /^Bob turned off disappearing messages\.$/ }).waitFor();
  await timerBadge.waitFor({ state: 'hidden' });
  assert.equal(await page.getByLabel('Disappearing messages').inputValue(), '0');
  await composer.fill(texts.afterTimerOff);
  await page.keyboard.press('Enter');
  const untimed = page.locator('li.message.mine', { has: page.locator('.text', { hasText: texts.afterTimerOff }) });
  await untimed.locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]').waitFor();
  assert.equal(await untimed.locator('.expires').count(), 0, 'no ⏱ once it is off');
  const untimedId = await untimed.getAttribute('data-msg');
  const untimedStored = (await bobTimer.readAll(directId)).find((m) => m.msgId === untimedId);
  assert.equal(untimedStored?.expiresAt ?? null, null, `no expiresAt: ${JSON.stringify(untimedStored)}`);
  await bobTimer.close();

  step('after the reload the page decrypts a new message');
  await courier(bob.config, ['send', alice.phone, texts.afterReload]);
  await page.locator('li.message:not(.mine) .text', { hasText: texts.afterReload }).waitFor();

  step('IndexedDB holds keys and sealed state, no plaintext');
  const stored = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('courier-web');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const tx = req.result.transaction('records', 'readonly');
          const store = tx.objectStore('records');
          const keys = store.getAllKeys();
          const values = store.getAll();
          tx.oncomplete = () =>
            resolve(
              keys.result.map((k, i) => {
                const v = values.result[i];
                return [k, v instanceof Uint8Array ? Array.from(v) : JSON.stringify(v)];
              }),
            );
        };
      }),
  );
  const names = stored.map(([k]) => k).sort();
  assert.deepEqual(names, ['credentials', 'cryptoState', 'local', 'stateKey']);
  for (const [k, v] of stored) {
    const bytes = Array.isArray(v) ? Buffer.from(v) : Buffer.from(v);
    for (const t of [texts.fromCli, texts.reply, texts.groupReply, texts.caption, texts.afterReload]) {
      assert.ok(!bytes.includes(Buffer.from(t)), `plaintext "${t}" in IndexedDB record ${k}`);
    }
  }
  assert.ok(Buffer.from(stored.find(([k]) => k === 'cryptoState')[1]).subarray(0, 4).equals(Buffer.from('CCS1')));

  step('a phone-sized screen shows one pane at a time');
  await page.setViewportSize({ width: 380, height: 700 });
  assert.ok(await page.locator('section.conversation').isVisible());
  assert.ok(!(await page.locator('nav.side').isVisible()), 'the chat list is hidden behind the conversation');
  await page.getByRole('button', { name: 'Back to chats' }).click();
  assert.ok(await page.locator('nav.side').isVisible());
  await page.setViewportSize({ width: 1100, height: 720 });

  step('the page blocks Bob: the chat says so and still sends to him; Bob\'s direct message is accepted by the server but not shown; his group message is');
  // Bob's device again, to see what the server did with his message.
  const bobAgain = await rawDevice(browser, bob);
  await bobChat.click();
  const blockButton = page.locator('#block');
  await blockButton.filter({ hasText: /^Block$/ }).waitFor();
  let blockQuestion = '';
  page.once('dialog', (d) => {
    blockQuestion = d.message();
    void d.accept();
  });
  await blockButton.click();
  const blockedNotice = page.locator('#blocked-notice', { hasText: 'You blocked this contact. Unblock to receive their messages.' });
  await blockedNotice.waitFor();
  assert.match(blockQuestion, new RegExp(`^Block ${BOB_NAME}\\?`), blockQuestion);
  assert.equal(await blockButton.textContent(), 'Unblock');
  // Sending to someone one blocked is allowed: Bob decrypts it.
  await composer.fill(texts.toBlocked);
  await page.keyboard.press('Enter');
  // Stored first (its tick), then read from Bob's inbox.
  await page
    .locator('li.message.mine', { has: page.locator('.text', { hasText: texts.toBlocked }) })
    .locator('.tick[data-status="sent"], .tick[data-status="delivered"], .tick[data-status="read"]')
    .waitFor();
  await inboxUntil(bob, (l) => l.text === texts.toBlocked);
  /** Bob's CLI sends in the direct chat; its reply (`--json`: msgId, seq). */
  const bobSends = async (text) => JSON.parse((await courier(bob.config, ['send', '--json', alice.phone, text])).trim().split('\n').pop());
  const withheld = await bobSends(texts.whileBlocked);
  // Groups are not affected: Bob's message in the group the page made arrives, after his direct one.
  await courier(bob.config, ['send', '--session', ownGroupGot.sessionId, texts.groupWhileBlocked]);
  await page.locator('button.chat', { hasText: `Alice's group ${nonce}` }).click();
  await page.locator('li.message:not(.mine) .text', { hasText: texts.groupWhileBlocked }).waitFor();
  await bobChat.click();
  await blockedNotice.waitFor();
  assert.equal(await page.locator('li.message .text', { hasText: texts.whileBlocked }).count(), 0, 'the message from Bob while blocked is not shown');
  assert.equal(await page.locator('button.chat', { hasText: texts.whileBlocked }).count(), 0, 'nor in the chat list');
  // The server took it as usual: Bob reads it back, Alice shows as not having it (one tick).
  const bobSees = (await bobAgain.readAll(directId)).find((m) => m.msgId === withheld.msgId);
  assert.equal(bobSees?.sender, bobAgain.userId, `Bob's message was accepted and stored: ${JSON.stringify(bobSees)}`);
  assert.equal((await bobAgain.request('getMessageStatus', { msgId: withheld.msgId })).status, 'sent');

  step('Settings lists Bob under Blocked contacts by name; Unblock there; Bob\'s next message shows, the one from while he was blocked never does');
  await page.locator('#settings-tab').click();
  const blockedItems = page.locator('#blocked-list li');
  await blockedItems.filter({ hasText: BOB_NAME }).waitFor();
  assert.deepEqual(await page.locator('#blocked-list li .name').allTextContents(), [BOB_NAME]);
  await page.getByRole('button', { name: `Unblock ${BOB_NAME}` }).click();
  await blockedItems.filter({ hasText: 'Nobody is blocked.' }).waitFor();
  await page.getByRole('button', { name: 'Close' }).click();
  await bobChat.click();
  await page.locator('#blocked-notice').waitFor({ state: 'hidden' });
  await blockButton.filter({ hasText: /^Block$/ }).waitFor();
  const afterUnblock = await bobSends(texts.afterUnblock);
  await page.locator('li.message:not(.mine) .text', { hasText: texts.afterUnblock }).waitFor();
  assert.equal(await page.locator('li.message .text', { hasText: texts.whileBlocked }).count(), 0, 'unblocking does not release what was withheld');
  // The page has read it (the chat is open): Bob's tick for it turns read; the withheld one stays sent.
  const until = Date.now() + WAIT;
  let afterStatus = '';
  while (Date.now() < until && afterStatus !== 'read') {
    afterStatus = (await bobAgain.request('getMessageStatus', { msgId: afterUnblock.msgId })).status;
    if (afterStatus !== 'read') await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(afterStatus, 'read', 'the page read Bob\'s message after the unblock');
  assert.equal((await bobAgain.request('getMessageStatus', { msgId: withheld.msgId })).status, 'sent', 'one tick for ever');
  await bobAgain.close();

  step('the page reports Bob: it says what it sends, then "Reported and blocked"; the report holds Bob\'s last 5 messages as the page shows them');
  await courier(bob.config, ['send', alice.phone, texts.spam]);
  await page.locator('li.message:not(.mine) .text', { hasText: texts.spam }).waitFor();
  // Bob's last five messages here with text (the deleted ones are gone; his picture by its caption).
  const attached = [];
  for (const t of [texts.bobCaption, texts.whileOffline, texts.afterReload, texts.afterUnblock, texts.spam]) {
    const li = page.locator('li.message:not(.mine)', { has: page.locator('.text', { hasText: t }) });
    attached.push({ msgId: await li.getAttribute('data-msg'), text: t });
  }
  let reportQuestion = '';
  page.once('dialog', (d) => {
    reportQuestion = d.message();
    void d.accept();
  });
  await page.locator('#report').click();
  await page.locator('#chat-note', { hasText: 'Reported and blocked.' }).waitFor();
  assert.match(reportQuestion, new RegExp(`^Report ${BOB_NAME} to Courier’s moderators\\? The last 5 messages from ${BOB_NAME} in this chat`), reportQuestion);
  await blockedNotice.waitFor();
  assert.equal(await blockButton.textContent(), 'Unblock');
  await page.locator('#settings-tab').click();
  await blockedItems.filter({ hasText: BOB_NAME }).waitFor();
  await page.getByRole('button', { name: 'Close' }).click();
  // tests/tests/web.rs finds the report in the local S3 under reports/ and compares.
  console.log(`REPORT ${JSON.stringify({ reporter: aliceId, reported: bobRaw.userId, sessionId: directId, messages: attached })}`);

  step('unlinking the browser removes the device and forgets its keys');
  await page.locator('#settings-tab').click();
  page.once('dialog', (d) => d.accept());
  await page.locator('#unlink').click();
  await page.locator('#link-code').filter({ hasText: /\S/ }).waitFor();
  const left = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const req = indexedDB.open('courier-web');
        req.onsuccess = () => {
          const keys = req.result.transaction('records').objectStore('records').getAllKeys();
          keys.onsuccess = () => resolve(keys.result);
        };
      }),
  );
  assert.deepEqual(left, [], 'nothing of the device is left in IndexedDB');
  const devicesAfter = await courier(alice.config, ['devices', 'list']);
  assert.doesNotMatch(devicesAfter, /web/i, `the web device is gone: ${devicesAfter}`);

  step('the page connected with one-time tickets only, never its key in a URL, under the CSP');
  assert.ok(keysInHeaders.size >= 1, 'the key went in a header (POST /v1/connect-tickets)');
  assert.ok(wsUrls.length >= 3, `connected, reconnected and reloaded: ${wsUrls.length} sockets`);
  const tickets = wsUrls.map((u) => new URL(u).searchParams.get('ticket'));
  for (const [i, u] of wsUrls.entries()) {
    assert.match(tickets[i] ?? '', /^ct_/, `a ticket in ${u}`);
    assert.ok(!new URL(u).searchParams.has('token'), `no token in ${u}`);
    for (const key of keysInHeaders) assert.ok(!u.includes(key), `the key is in ${u}`);
  }
  assert.equal(new Set(tickets).size, tickets.length, 'each ticket used once');
  const refused = consoleLines.filter((l) => /Content Security Policy/i.test(l));
  assert.deepEqual(refused, [], 'nothing was refused by the CSP');

  step('no plaintext in anything the page sent');
  const secrets = [
    texts.quoteReply,
    texts.typo,
    texts.edited,
    texts.toDelete,
    texts.reply,
    texts.groupReply,
    texts.caption,
    texts.imageSecret,
    texts.status,
    texts.ownGroup,
    texts.toBlocked,
    texts.underTimer,
    texts.vanishing,
    texts.afterTimerOff,
    ...[texts.reply, texts.groupReply].map((t) => Buffer.from(t).toString('base64').slice(0, 16)),
  ];
  const total = sent.reduce((n, s) => n + s.body.length, 0);
  assert.ok(sent.some((s) => s.what.startsWith('PUT ') && s.body.length >= image.length), 'the upload was captured');
  assert.ok(sent.filter((s) => s.what.startsWith('ws ')).length > 10, 'WebSocket frames were captured');
  const carrying = (needle) => sent.filter((s) => s.body.includes(needle));
  // A control: the display name is plaintext by design (updateSettings), and the same search
  // finds it in the frame that saved it, so the search can see a plaintext when one is there.
  const displayName = `Alice on the web ${nonce}`;
  const named = carrying(Buffer.from(displayName));
  assert.ok(
    named.some((s) => s.what.startsWith('ws ') && s.body.includes(Buffer.from('updateSettings'))),
    `the search finds the display name in the updateSettings frame (found in: ${named.map((s) => s.what).join(', ') || 'nothing'})`,
  );
  // The one plaintext a user sends on purpose: the reported messages, in the reportUser frame.
  const reportFrames = carrying(Buffer.from(texts.spam));
  assert.ok(
    reportFrames.length > 0 && reportFrames.every((s) => s.what.startsWith('ws ') && s.body.includes(Buffer.from('"reportUser"'))),
    `the reported text went only in the reportUser frame (found in: ${reportFrames.map((s) => s.what).join(', ') || 'nothing'})`,
  );
  for (const secret of secrets) {
    const found = carrying(Buffer.from(secret));
    assert.deepEqual(
      found.map((s) => s.what),
      [],
      `plaintext "${secret}" was sent`,
    );
  }
  const imageFound = carrying(image.subarray(0, 64));
  assert.deepEqual(
    imageFound.map((s) => s.what),
    [],
    "the image's bytes were sent",
  );
  console.log(`checked ${sent.length} requests and frames (${total} bytes) for ${secrets.length} plaintexts`);
} catch (e) {
  failed = true;
  console.error(`FAILED after: ${steps[steps.length - 1]}\n${e.stack ?? e}`);
  console.error(`page console:\n${consoleLines.slice(-40).join('\n')}`);
  try {
    mkdirSync(join(ROOT, 'web/test-results'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'web/test-results/failure.png') });
    writeFileSync(join(ROOT, 'web/test-results/failure.html'), await page.content());
  } catch {
    // Best effort.
  }
} finally {
  await browser.close();
}
console.log(`${failed ? 'FAIL' : 'ok'}: ${steps.length} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failed ? 1 : 0);
