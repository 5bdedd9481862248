// Courier Web: links this browser as a companion device of the user's phone, then chats.

import './style.css';
import { Client } from './client';
import { loadWasm, openDevice, wasmError } from './crypto';
import * as db from './db';
import { ApiError, loadConfig, pollLink, requestLink, type Config, type Credentials } from './net';
import { AppView, h, linkScreen } from './ui';

const root = document.getElementById('app')!;

async function link(config: Config): Promise<Credentials> {
  const view = linkScreen(root);
  for (;;) {
    let req;
    try {
      req = await requestLink(config, `Courier Web (${navigator.userAgent.includes('Chrom') ? 'Chromium' : 'browser'})`);
    } catch (e) {
      await new Promise<void>((resolve) =>
        view.error(`Could not ask for a link code: ${(e as Error).message}`, resolve),
      );
      continue;
    }
    await view.show(req.code, req.expiresInSeconds);
    const until = Date.now() + req.expiresInSeconds * 1000;
    let expired = false;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const creds = await pollLink(config, req.linkId);
        if (creds) return creds;
      } catch (e) {
        if (e instanceof ApiError && ['EXPIRED', 'NOT_FOUND'].includes(e.code)) {
          expired = true;
          break;
        }
        // A network hiccup: keep polling.
      }
    }
    await new Promise<void>((resolve) =>
      view.error(expired ? 'The code expired or was refused.' : 'The code expired.', resolve),
    );
  }
}

async function start(): Promise<void> {
  root.replaceChildren(h('p', { role: 'status', text: 'Loading…' }));
  const [config] = await Promise.all([loadConfig(), loadWasm()]);
  let creds = await db.get<Credentials>('credentials');
  if (!creds) {
    creds = await link(config);
    await db.put('credentials', creds);
  }
  const dev = await openDevice(creds.userId, creds.deviceId);
  let view: AppView | null = null;
  const client = new Client(
    creds,
    dev,
    config,
    () => view?.render(),
    (s) => view?.setConn(s),
  );
  await client.restore();
  view = new AppView(root, client);
  view.setConn('connecting');
  client.conn.start();
}

start().catch((e) => {
  root.replaceChildren(
    h('p', { role: 'alert', class: 'error', text: `Courier Web could not start: ${wasmError(e).message}` }),
  );
});
