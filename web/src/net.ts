// The transports: the HTTP API (device linking) and the WebSocket API (everything else), as the
// protocol describes them (docs/protocol.md). Nothing here sees plaintext: payloads arrive
// encrypted by the wasm and leave as they came.

export interface Config {
  httpUrl: string;
  wsUrl: string;
}

/** Where the APIs are: `config.json` beside the page (`wsUrl`, and `httpUrl` unless it is this
 * origin: the local cloud serves it with its real ports; a deployment uploads it with the
 * stack's outputs), else this origin and port 3001. */
export async function loadConfig(): Promise<Config> {
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (r.ok) {
      const c = (await r.json()) as Partial<Config>;
      if (c.wsUrl) {
        return { httpUrl: (c.httpUrl || location.origin).replace(/\/$/, ''), wsUrl: c.wsUrl };
      }
    }
  } catch {
    // Fall through to the defaults.
  }
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:3001`;
  return { httpUrl: location.origin, wsUrl: ws };
}

/** A protocol error (`{"code", "message"}`) or a transport failure (`TRANSPORT`). */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export interface LinkRequest {
  linkId: string;
  code: string;
  expiresInSeconds: number;
}

export interface Credentials {
  userId: string;
  deviceId: string;
  apiKey: string;
}

async function http<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  let r: Response;
  try {
    r = await fetch(url, init);
  } catch (e) {
    throw new ApiError('TRANSPORT', `cannot reach ${url}: ${String(e)}`);
  }
  const text = await r.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError('UNEXPECTED', `HTTP ${r.status}: ${text.slice(0, 200)}`);
  }
  if (r.status >= 400) {
    const err = (body as { error?: { code: string; message: string } })?.error;
    throw new ApiError(err?.code ?? `HTTP_${r.status}`, err?.message ?? text.slice(0, 200));
  }
  return { status: r.status, body: body as T };
}

/** Starts a device link: the code the primary device approves. */
export async function requestLink(config: Config, name: string): Promise<LinkRequest> {
  const r = await http<LinkRequest>(`${config.httpUrl}/v1/devices/link-requests`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, platform: 'web' }),
  });
  return r.body;
}

/** A one-time connect ticket: the key goes in this request's header, and only the ticket in the
 * WebSocket URL (a browser cannot set headers on the handshake, and URLs end up in access logs).
 * It opens one connection, within seconds. */
export async function connectTicket(config: Config, apiKey: string): Promise<string> {
  const r = await http<{ ticket: string }>(`${config.httpUrl}/v1/connect-tickets`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}` },
  });
  return r.body.ticket;
}

/** Polls a link request: the credentials once approved, null while pending. */
export async function pollLink(config: Config, linkId: string): Promise<Credentials | null> {
  const r = await http<Credentials>(
    `${config.httpUrl}/v1/devices/link-requests/${encodeURIComponent(linkId)}`,
  );
  return r.status === 200 ? r.body : null;
}

export type ConnState = 'connecting' | 'online' | 'offline';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: ApiError) => void;
  timer: number;
}

const REQUEST_TIMEOUT_MS = 20_000;
/** API Gateway's WebSocket frame limit. */
const MAX_FRAME_BYTES = 32 * 1024;
/** A request this often keeps the socket from the 10-minute idle timeout and finds a socket that
 * died while the laptop slept. */
const HEARTBEAT_MS = 30_000;

/** The WebSocket, kept up: reconnects with backoff (1 s doubling to 30 s, with jitter), at once
 * when the browser comes back online or the page becomes visible, and calls `onUp` after every
 * connect so the app syncs. */
export class Connection {
  private ws: WebSocket | null = null;
  private next = 1;
  private pending = new Map<string, Pending>();
  private backoff = 1000;
  private retryTimer = 0;
  private heartbeat = 0;
  private stopped = false;
  /** Counts connection attempts: a ticket that arrives after a newer attempt began is dropped. */
  private attempt = 0;
  state: ConnState = 'offline';

  constructor(
    private readonly config: Config,
    private readonly apiKey: string,
    private readonly onEvent: (e: Record<string, unknown>) => void,
    private readonly onState: (s: ConnState) => void,
    private readonly onUp: () => Promise<void>,
  ) {
    window.addEventListener('online', () => this.reconnectNow());
    // The network went away (Wi-Fi off, laptop lid closed): the socket is dead even if it does
    // not know yet; retry with backoff until 'online'.
    window.addEventListener('offline', () => this.drop());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.check();
    });
  }

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.heartbeat);
    this.ws?.close();
  }

  private setState(s: ConnState): void {
    this.state = s;
    this.onState(s);
  }

  private open(): void {
    if (this.stopped) return;
    window.clearTimeout(this.retryTimer);
    this.setState('connecting');
    const attempt = ++this.attempt;
    connectTicket(this.config, this.apiKey).then(
      (ticket) => {
        if (attempt === this.attempt && !this.stopped) this.openWith(ticket);
      },
      (e) => {
        if (attempt !== this.attempt || this.stopped) return;
        console.warn('no connect ticket', e);
        this.setState('offline');
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    const wait = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, 30_000);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.open(), wait);
  }

  private openWith(ticket: string): void {
    const url = this.config.wsUrl;
    const sep = url.includes('?') ? '&' : '?';
    const ws = new WebSocket(`${url}${sep}ticket=${encodeURIComponent(ticket)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 1000;
      this.setState('online');
      window.clearInterval(this.heartbeat);
      this.heartbeat = window.setInterval(() => this.check(), HEARTBEAT_MS);
      this.onUp().catch((e) => console.warn('sync after connect failed', e));
    };
    ws.onmessage = (m) => this.onFrame(String(m.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      window.clearInterval(this.heartbeat);
      this.failAll('the connection closed');
      if (this.stopped) return;
      // A browser does not say why a handshake failed (a network error and a refused key look
      // the same), so both are retried; Settings has "Unlink this browser".
      this.setState('offline');
      this.retryLater();
    };
  }

  /** Abandons the socket and retries later. */
  private drop(): void {
    const ws = this.ws;
    if (!ws || this.stopped) return;
    this.ws = null;
    window.clearInterval(this.heartbeat);
    ws.close();
    this.failAll('the network is offline');
    this.setState('offline');
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.open(), this.backoff);
  }

  /** Reconnects now (the network came back). */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.check();
      return;
    }
    this.backoff = 1000;
    this.ws?.close();
    this.ws = null;
    this.open();
  }

  /** Proves the socket is alive with a request (after a sleep it may look open and be dead);
   * a silent one is closed and opened again. */
  private check(): void {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.reconnectNow();
      return;
    }
    const ws = this.ws;
    // One session is enough: the reply is the proof, not the list.
    this.request('listSessions', { limit: 1 }, 10_000)
      .then(() => this.onUp())
      .catch((e: ApiError) => {
        if (e.code === 'TRANSPORT' && this.ws === ws) {
          ws.close();
          this.ws = null;
          this.failAll('no answer: reconnecting');
          this.open();
        }
      });
  }

  private failAll(why: string): void {
    for (const [, p] of this.pending) {
      window.clearTimeout(p.timer);
      p.reject(new ApiError('TRANSPORT', why));
    }
    this.pending.clear();
  }

  private onFrame(text: string): void {
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (f.type === 'response' && typeof f.requestId === 'string') {
      const p = this.pending.get(f.requestId);
      if (!p) return;
      this.pending.delete(f.requestId);
      window.clearTimeout(p.timer);
      if (f.ok) p.resolve(f.result ?? {});
      else {
        const e = (f.error ?? {}) as { code?: string; message?: string };
        p.reject(new ApiError(e.code ?? 'INTERNAL', e.message ?? 'request failed'));
      }
      return;
    }
    if (f.type === 'event') this.onEvent(f);
  }

  /** One request; resolves with its `result`. */
  request<T = Record<string, unknown>>(
    action: string,
    params: Record<string, unknown>,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<T> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ApiError('TRANSPORT', 'not connected'));
    }
    const requestId = `w-${this.next++}`;
    const frame = JSON.stringify({ ...params, action, requestId });
    // API Gateway closes the connection on a frame over 32 KB, and a browser cannot fragment.
    const size = new TextEncoder().encode(frame).length;
    if (size > MAX_FRAME_BYTES) {
      return Promise.reject(
        new ApiError('PAYLOAD_TOO_LARGE', `${action} would be ${size} bytes; a browser can send at most ${MAX_FRAME_BYTES} in one request`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ApiError('TRANSPORT', `no reply to ${action} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(requestId, { resolve: resolve as (v: unknown) => void, reject, timer });
      ws.send(frame);
    });
  }

  /** The wasm's caller: a frame's fields in, the result as JSON out; failures as
   * `{"code","message"}` JSON (what courier-web maps back to the SDK's errors). */
  readonly caller = (frame: string): Promise<string> => {
    const { action, ...params } = JSON.parse(frame) as { action: string };
    return this.request(action, params).then(
      (r) => JSON.stringify(r),
      (e: ApiError) => Promise.reject(JSON.stringify({ code: e.code, message: e.message })),
    );
  };
}

/** A presigned upload with progress (XHR: fetch cannot report upload progress). */
export function upload(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array,
  onProgress: (sent: number, total: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method || 'PUT', url);
    for (const [k, v] of Object.entries(headers)) {
      // The browser sets these itself.
      if (!['content-length', 'host'].includes(k.toLowerCase())) xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.length);
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new ApiError('UPLOAD', `the upload was refused (HTTP ${xhr.status})`));
    xhr.onerror = () => reject(new ApiError('TRANSPORT', 'the upload failed'));
    xhr.send(body as unknown as XMLHttpRequestBodyInit);
  });
}
