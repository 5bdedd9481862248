// IndexedDB: one object store of records by name. What is kept:
//   credentials  {userId, deviceId, apiKey}           (the device's API key, as the CLI keeps it)
//   stateKey     Uint8Array                            (the AES-256 key of the sealed states)
//   cryptoState  Uint8Array                            (the crypto state, sealed by the wasm)
//   local        Uint8Array                            (chats and messages, sealed by the wasm)

const DB_NAME = 'courier-web';
const STORE = 'records';

let opened: Promise<IDBDatabase> | null = null;

function db(): Promise<IDBDatabase> {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('IndexedDB could not be opened'));
    });
  }
  return opened;
}

function run<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest): Promise<T> {
  return db().then(
    (d) =>
      new Promise<T>((resolve, reject) => {
        const tx = d.transaction(STORE, mode);
        const req = f(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result as T);
        tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
        tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
      }),
  );
}

export function get<T>(name: string): Promise<T | undefined> {
  return run<T | undefined>('readonly', (s) => s.get(name));
}

export function put(name: string, value: unknown): Promise<void> {
  return run<IDBValidKey>('readwrite', (s) => s.put(value, name)).then(() => undefined);
}

/** Forgets everything (unlinking this browser). */
export function clear(): Promise<void> {
  return run<undefined>('readwrite', (s) => s.clear()).then(() => undefined);
}
