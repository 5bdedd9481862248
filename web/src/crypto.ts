// The wasm (crates/courier-web): courier-client's crypto, compiled to WebAssembly. Every state
// change it makes is sealed by the wasm and written to IndexedDB here, in order.

import init, {
  WebDevice,
  encryptFile,
  decryptFile,
  parseMediaDescriptor,
  renderThread,
  encodeContent,
} from './wasm/courier_web.js';
import * as db from './db';

export { WebDevice, encryptFile, decryptFile, parseMediaDescriptor, renderThread, encodeContent };

let ready: Promise<unknown> | null = null;

export function loadWasm(): Promise<unknown> {
  ready ??= init();
  return ready;
}

let writes: Promise<void> = Promise.resolve();

/** Writes the device's sealed state if it changed (call after every operation). */
export function persist(dev: WebDevice): Promise<void> {
  const state = dev.takeState();
  if (state) {
    // Later writes carry the whole state: one failed write must not stop them.
    writes = writes
      .then(() => db.put('cryptoState', state))
      .catch((e) => console.error('saving the crypto state to IndexedDB failed', e));
  }
  return writes;
}

/** Opens the device kept in IndexedDB, or creates one (new identity keys) for new credentials. */
export async function openDevice(userId: string, deviceId: string): Promise<WebDevice> {
  await loadWasm();
  const key = await db.get<Uint8Array>('stateKey');
  const state = await db.get<Uint8Array>('cryptoState');
  if (key && state) return WebDevice.open(userId, deviceId, key, state);
  const dev = WebDevice.create(userId, deviceId);
  await db.put('stateKey', dev.stateKey());
  await persist(dev);
  return dev;
}

/** A wasm error (`{"code","message"}` JSON) as code and message. */
export function wasmError(e: unknown): { code: string; message: string } {
  const text = typeof e === 'string' ? e : e instanceof Error ? e.message : String(e);
  try {
    const v = JSON.parse(text) as { code?: string; message?: string };
    if (v && v.code) return { code: v.code, message: v.message ?? '' };
  } catch {
    // Not JSON.
  }
  return { code: 'CLIENT', message: text };
}
