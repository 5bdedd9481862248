// The messaging client: chats, messages, receipts and sync over the WebSocket, every payload
// encrypted and decrypted by the wasm (the same key sharing the CLI does: courier-client's
// `e2ee`). The UI (ui.ts) renders `Client.chats` and calls the actions below.

import {
  ApiError,
  Connection,
  upload,
  type Config,
  type ConnState,
  type Credentials,
} from './net';
import {
  WebDevice,
  decryptFile,
  encodeContent,
  encryptFile,
  parseMediaDescriptor,
  persist,
  renderThread,
  wasmError,
} from './crypto';
import * as db from './db';

export type Tick = 'pending' | 'sent' | 'delivered' | 'read' | 'failed';

export interface MediaInfo {
  descriptor: string;
  contentType: string;
  fileName?: string;
  caption?: string;
  size: number;
}

export interface ChatMessage {
  msgId: string;
  seq: number;
  clientMsgId?: string;
  sender: string;
  kind: 'text' | 'media' | 'system';
  /** The decrypted plaintext: text, or a reply, reaction or edit as courier-client's
   * `Content` encodes it (read through `Client.thread`); a media message's caption. */
  text: string;
  media?: MediaInfo;
  /** Not decryptable (yet): why. */
  problem?: string;
  sentAt: string;
  mine: boolean;
  /** Own messages: the weakest recipient's status. */
  tick?: Tick;
  /** Deleted for everyone by its sender: its text and media are gone from here too. */
  deleted?: boolean;
  /** From the history bundle the phone sent when this browser was linked (sent before this
   * browser could read the chat): shown under "Synced from your phone". */
  synced?: boolean;
  /** When it disappears (sent while the chat's disappearing timer was on, RFC 3339): the page
   * deletes it then, from the chat and from what it keeps. */
  expiresAt?: string;
}

/** A history bundle offer (courier-client's `history_bundle::HistoryOffer`), from this
 * account's primary device: the wasm checked who sent it. */
interface HistoryOffer {
  parts: { mediaId: string }[];
  messages: number;
  chats: number;
}

/** One message of a history bundle (courier-client's `HistoryEntry`). */
interface HistoryEntry {
  sessionId: string;
  msgId: string;
  seq: number;
  sender: string;
  sentAt: string;
  type: string;
  text?: string;
  payload?: unknown;
  expiresAt?: string;
}

/** One message as the chat shows it (courier-client's `content::Shown`, from the wasm's
 * `renderThread`): replies, reactions and edits folded into the messages they are about. */
export interface Shown {
  msgId: string;
  sender: string;
  sentAt: string;
  text: string | null;
  replyTo?: { msgId: string; sender: string | null; text: string | null };
  reactions?: Record<string, string>;
  edited: boolean;
  deleted: boolean;
}

/** What `getProfile` says of a person's presence (absent when their privacy hides it). */
export interface Presence {
  online?: boolean;
  lastSeen?: string | null;
}

/** Deleting for everyone is allowed this long after sending (docs/protocol.md). */
export const DELETE_WINDOW_MS = 48 * 3600 * 1000;
/** Editing is allowed this long after sending (courier-client's `EDIT_WINDOW_SECS`). */
export const EDIT_WINDOW_MS = 15 * 60 * 1000;
/** A report attaches at most this many of the person's messages (docs/protocol.md). */
export const REPORTED_MESSAGES = 5;
/** While the user types, `sendTyping true` goes out at most this often. */
const TYPING_RESEND_MS = 3000;
/** A peer's "typing…" shows this long after their last `typing: true`. */
const TYPING_SHOWN_MS = 5000;

export interface Chat {
  sessionId: string;
  type: 'direct' | 'group';
  members: string[];
  name: string;
  lastSeq: number;
  /** This user's read watermark (any of its devices). */
  readSeq: number;
  /** The highest seq read from the server (contiguous). */
  cursorSeq: number;
  cursorMsgId: string | null;
  /** Per other member: [delivered seq, read seq]. */
  peers: Record<string, [number, number]>;
  messages: ChatMessage[];
  /** The chat's disappearing timer, from the last `disappearingTimer` record read (the server
   * does not list it): seconds (0: off), who set it, and the record's seq. Absent: none read. */
  timer?: { seconds: number; by: string; seq: number };
}

/** The disappearing-message timers the protocol allows (docs/protocol.md), with 0 for off. */
export const TIMER_CHOICES: { seconds: number; label: string }[] = [
  { seconds: 0, label: 'Off' },
  { seconds: 86_400, label: '24 hours' },
  { seconds: 604_800, label: '7 days' },
  { seconds: 7_776_000, label: '90 days' },
];

export interface StatusItem {
  userId: string;
  statusId: string;
  text: string;
  postedAt: string;
  expiresAt: string;
}

interface RawMessage {
  msgId: string;
  sessionId: string;
  seq: number;
  sender: string;
  senderDevice: string;
  clientMsgId?: string | null;
  type: string;
  payload: string;
  attachments?: string[];
  sentAt?: string;
  expiresAt?: string;
}

interface SessionSummary {
  sessionId: string;
  type: 'direct' | 'group';
  members: string[];
  lastSeq: number;
  lastMsgId: string | null;
  deliveredSeq: number;
  readSeq: number;
}

interface Decrypted {
  kind: 'text' | 'held' | 'notEncrypted' | 'failed';
  text?: string;
  error?: string;
}

const STATUS_RANK: Record<string, number> = { sent: 1, delivered: 2, read: 3 };

export class Client {
  readonly chats = new Map<string, Chat>();
  readonly conn: Connection;
  /** Display names by user id (profiles), filled as chats appear. */
  readonly names = new Map<string, string>();
  /** Files this browser sent, by clientMsgId: shown from the original, not downloaded back. */
  readonly sentFiles = new Map<string, Blob>();
  /** Statuses this browser posted (a device holds no inbound key for its own posts). */
  private readonly ownStatuses = new Map<string, string>();
  /** The chat on screen (read receipts go out for it while the page is visible). */
  openChat: string | null = null;
  lastError: string | null = null;
  /** Whether a full sync (keys published, queue read, chats read) completed since start. */
  synced = false;
  private syncing: Promise<void> | null = null;
  private saveTimer = 0;
  /** The next message expiry this page waits for (ms since the epoch), and its timeout. */
  private expiryAt = Infinity;
  private expiryTimer = 0;
  /** The last send of each chat: the next one waits for it (see `inTurn`). */
  private sendTurns = new Map<string, Promise<void>>();
  private events: Promise<void> = Promise.resolve();
  /** Bumped on every change: `thread()` folds a chat again only after one. */
  private rev = 0;
  private threads = new WeakMap<Chat, { rev: number; shown: Shown[] }>();
  /** Who is typing where: session -> user -> until when (ms). */
  private typingNow = new Map<string, Map<string, number>>();
  private typingTimers = new Map<string, number>();
  /** This user's last `sendTyping`: where, whether typing, when. */
  private typingSent: { sessionId: string; typing: boolean; at: number } | null = null;
  /** Presence of the people this user chats with, as last read (`getProfile`). */
  readonly presence = new Map<string, Presence>();
  /** The people this user blocked, as last read (`listBlocked`) or changed here. */
  readonly blocked = new Set<string>();

  constructor(
    readonly creds: Credentials,
    readonly dev: WebDevice,
    config: Config,
    private readonly changed: () => void,
    onState: (s: ConnState) => void,
  ) {
    this.conn = new Connection(
      config,
      creds.apiKey,
      (e) => {
        // One event at a time, in arrival order.
        this.events = this.events.then(() => this.onEvent(e)).catch((err) => this.report(err));
      },
      onState,
      () => this.sync(),
    );
  }

  get me(): string {
    return this.creds.userId;
  }

  private report(e: unknown): void {
    this.rev++;
    const msg = e instanceof ApiError ? e.message : wasmError(e).message;
    this.lastError = msg;
    console.warn(msg);
    this.changed();
  }

  // ---- local state (sealed in IndexedDB) -------------------------------------------------------

  async restore(): Promise<void> {
    const sealed = await db.get<Uint8Array>('local');
    if (!sealed) return;
    try {
      const json = new TextDecoder().decode(this.dev.openLocal(sealed));
      const saved = JSON.parse(json) as { chats: Chat[]; names: [string, string][] };
      for (const c of saved.chats) this.chats.set(c.sessionId, c);
      for (const [k, v] of saved.names) this.names.set(k, v);
    } catch (e) {
      console.warn('the saved chats could not be read; reading them again from the server', e);
    }
    // What expired while the page was closed goes before anything shows it; then the timer for
    // what expires next.
    this.expire();
    this.scheduleExpiry();
  }

  /** Saves chats and messages (sealed by the wasm), at most every half second. */
  private save(): void {
    // Pending, or stopped for good (unlinked).
    if (this.saveTimer) return;
    this.saveTimer = window.setTimeout(() => {
      this.saveTimer = 0;
      const json = JSON.stringify({ chats: [...this.chats.values()], names: [...this.names] });
      const sealed = this.dev.sealLocal(new TextEncoder().encode(json));
      db.put('local', sealed).catch((e) => console.warn('saving chats failed', e));
    }, 500);
  }

  private touch(): void {
    this.rev++;
    this.scheduleExpiry();
    this.save();
    this.changed();
  }

  // ---- disappearing messages ---------------------------------------------------------------------

  /** Deletes every message whose `expiresAt` has come, from the chats and (by the save that
   * follows) from IndexedDB, with the file this browser sent for it. */
  private expire(): void {
    const now = Date.now();
    let gone = 0;
    for (const chat of this.chats.values()) {
      const expired = (m: ChatMessage) => !!m.expiresAt && Date.parse(m.expiresAt) <= now;
      if (!chat.messages.some(expired)) continue;
      for (const m of chat.messages.filter(expired)) {
        if (m.clientMsgId) this.sentFiles.delete(m.clientMsgId);
        gone++;
      }
      chat.messages = chat.messages.filter((m) => !expired(m));
    }
    if (gone) {
      this.rev++;
      this.save();
    }
  }

  /** One timer, for the next message to expire (set again after every change). */
  private scheduleExpiry(): void {
    let next = Infinity;
    for (const chat of this.chats.values()) {
      for (const m of chat.messages) {
        if (m.expiresAt) next = Math.min(next, Date.parse(m.expiresAt));
      }
    }
    if (next === this.expiryAt) return;
    window.clearTimeout(this.expiryTimer);
    this.expiryAt = next;
    if (next === Infinity) return;
    // setTimeout takes at most 2^31-1 ms: a far expiry is looked at again within a day.
    const wait = Math.min(Math.max(next - Date.now(), 0) + 20, 86_400_000);
    this.expiryTimer = window.setTimeout(() => {
      this.expiryAt = Infinity;
      this.expire();
      this.touch();
    }, wait);
  }

  /** The chat's current disappearing timer in seconds (0: off). */
  timerOf(chat: Chat): number {
    return chat.timer?.seconds ?? 0;
  }

  /** Turns disappearing messages on, changes the timer or turns them off
   * (`setDisappearingTimer`; in a group only admins may: FORBIDDEN, which changes nothing). */
  async setDisappearingTimer(sessionId: string, seconds: number): Promise<void> {
    const chat = this.chats.get(sessionId);
    if (!chat) throw new Error('no such chat');
    const r = await this.conn.request<{ seconds: number; msgId?: string }>('setDisappearingTimer', {
      sessionId,
      seconds,
    });
    // The record of the change comes to the other devices as an event, not to this one: read it
    // (if that fails, the next sync does; the change itself was made).
    if (r.msgId) await this.readChat(chat).catch((e) => console.warn('reading the timer record failed', e));
    this.touch();
  }

  // ---- sync --------------------------------------------------------------------------------------

  /** After every connect (and every heartbeat): keys, the device queue (room keys), every chat
   * from its cursor, delivered receipts. One at a time. */
  sync(): Promise<void> {
    if (this.syncing) return this.syncing;
    this.syncing = this.doSync().finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }

  private async doSync(): Promise<void> {
    try {
      await this.dev.publishKeys(this.conn.caller);
      await persist(this.dev);
    } catch (e) {
      this.report(e);
    }
    await this.drainDeviceQueue();
    for (const s of await this.listSessions()) {
      const chat = this.chatFor(s.sessionId, s.type, s.members);
      chat.lastSeq = Math.max(chat.lastSeq, s.lastSeq);
      chat.readSeq = Math.max(chat.readSeq, s.readSeq);
      if (s.lastSeq > chat.cursorSeq) await this.readChat(chat);
      await this.ackDelivered(chat, s.deliveredSeq);
      await this.refreshTicks(chat);
    }
    await this.drainDeviceQueue();
    this.ackReadIfOpen();
    this.synced = true;
    this.touch();
  }

  /** Every session, page after page: the server pages `listSessions` by session id and cuts a
   * page to fit a reply frame (`hasMore`: ask again after the last one). */
  private async listSessions(): Promise<SessionSummary[]> {
    const all: SessionSummary[] = [];
    for (;;) {
      const after = all.length > 0 ? { after: all[all.length - 1].sessionId } : {};
      const page = await this.conn.request<{ sessions: SessionSummary[]; hasMore?: boolean }>(
        'listSessions',
        { limit: 100, ...after },
      );
      all.push(...page.sessions);
      if (!page.hasMore || page.sessions.length === 0) return all;
    }
  }

  private chatFor(sessionId: string, type: 'direct' | 'group', members: string[]): Chat {
    let chat = this.chats.get(sessionId);
    if (!chat) {
      chat = {
        sessionId,
        type,
        members,
        name: '',
        lastSeq: 0,
        readSeq: 0,
        cursorSeq: 0,
        cursorMsgId: null,
        peers: {},
        messages: [],
      };
      this.chats.set(sessionId, chat);
      void this.nameChat(chat);
    } else if (members.length) {
      chat.members = members;
    }
    return chat;
  }

  private async nameChat(chat: Chat): Promise<void> {
    try {
      if (chat.type === 'group') {
        const g = await this.conn.request<{ name: string; members: { userId: string }[] }>(
          'getGroup',
          { groupId: chat.sessionId },
        );
        chat.name = g.name;
        chat.members = g.members.map((m) => m.userId);
      } else {
        const peer = chat.members.find((m) => m !== this.me) ?? this.me;
        chat.name = await this.nameOf(peer);
      }
      this.touch();
    } catch (e) {
      console.warn('naming a chat failed', e);
    }
  }

  async nameOf(userId: string): Promise<string> {
    const known = this.names.get(userId);
    if (known) return known;
    let name = userId;
    try {
      const p = await this.conn.request<{ name?: string | null }>('getProfile', { userId });
      if (p.name) name = p.name;
    } catch {
      // Keep the id.
    }
    this.names.set(userId, name);
    return name;
  }

  private async readChat(chat: Chat): Promise<void> {
    for (;;) {
      const page = await this.conn.request<{
        messages: RawMessage[];
        hasMore: boolean;
        skippedTo?: string | null;
      }>('readNewMessages', { sessionId: chat.sessionId, lastMsgId: chat.cursorMsgId, limit: 100 });
      for (const m of page.messages) await this.take(m, true);
      // A page whose messages had all disappeared comes back empty, with where to go on from.
      const seq = page.skippedTo ? seqOf(page.skippedTo) : null;
      if (!page.messages.length && page.hasMore && page.skippedTo && seq !== null && seq > chat.cursorSeq) {
        chat.cursorSeq = seq;
        chat.cursorMsgId = page.skippedTo;
        continue;
      }
      if (!page.hasMore || page.messages.length === 0) return;
    }
  }

  private async drainDeviceQueue(): Promise<void> {
    for (;;) {
      const page = await this.conn.request<{
        messages: Record<string, unknown>[];
        hasMore: boolean;
      }>('readDeviceMessages', { limit: 100 });
      const acks: string[] = [];
      for (const dm of page.messages) {
        if (await this.onDeviceMessage(dm)) acks.push(String(dm.id));
      }
      if (acks.length) await this.conn.request('ackDeviceMessages', { ids: acks });
      if (!page.hasMore || !acks.length) return;
    }
  }

  /** A device message (a room key, over Olm): whether it may be acknowledged. */
  private async onDeviceMessage(dm: Record<string, unknown>): Promise<boolean> {
    try {
      const out = JSON.parse(
        await this.dev.receiveDeviceMessage(this.conn.caller, JSON.stringify(dm)),
      ) as {
        released: { message: RawMessage; result: Decrypted }[];
        historyOffers?: { offer: HistoryOffer }[];
      };
      await persist(this.dev);
      for (const r of out.released) this.place(r.message, r.result);
      if (out.released.length) this.touch();
      for (const h of out.historyOffers ?? []) await this.importHistory(h.offer);
      return true;
    } catch (e) {
      await persist(this.dev);
      const err = wasmError(e);
      if (err.code === 'IDENTITY_CHANGED') {
        this.report(`${err.message}: not accepted until verified on the phone`);
        return false;
      }
      if (err.code === 'TRANSPORT') throw e;
      this.report(e);
      return true;
    }
  }

  /** The history the phone sent when this browser was linked: its parts downloaded (the
   * account may download its own uploads), checked and decrypted by the wasm, and merged into
   * the chats marked as synced. A bundle that does not check out is reported and changes
   * nothing; one that cannot be downloaded is reported too (the phone can send another). */
  private async importHistory(offer: HistoryOffer): Promise<void> {
    let entries: HistoryEntry[];
    try {
      const parts: Uint8Array[] = [];
      for (const p of offer.parts) {
        const d = await this.conn.request<{ downloadUrl: string }>('getMediaDownload', {
          mediaId: p.mediaId,
        });
        const r = await fetch(d.downloadUrl);
        if (!r.ok) throw new ApiError('DOWNLOAD', `the download was refused (HTTP ${r.status})`);
        parts.push(new Uint8Array(await r.arrayBuffer()));
      }
      entries = JSON.parse(this.dev.openHistoryBundle(JSON.stringify(offer), parts)) as HistoryEntry[];
    } catch (e) {
      const msg = e instanceof ApiError ? e.message : wasmError(e).message;
      this.report(`The history from your phone could not be read: ${msg}`);
      return;
    }
    const senders = new Map<string, Set<string>>();
    for (const e of entries) {
      const s = senders.get(e.sessionId) ?? new Set([this.me]);
      senders.set(e.sessionId, s.add(e.sender));
    }
    const touched = new Set<Chat>();
    for (const e of entries) {
      const group = e.sessionId.startsWith('g_');
      const known = this.chats.has(e.sessionId);
      const chat = this.chatFor(
        e.sessionId,
        group ? 'group' : 'direct',
        known || group ? [] : [...(senders.get(e.sessionId) ?? [])],
      );
      this.placeSynced(chat, e);
      touched.add(chat);
    }
    // Once per chat (a bundle holds up to 1,000 messages a chat).
    for (const chat of touched) {
      chat.messages.sort((a, b) => a.seq - b.seq);
      this.applyWatermarks(chat);
    }
    this.touch();
  }

  /** One message of the phone's history, unless this browser has it readable already (the
   * caller sorts the chat afterwards). */
  private placeSynced(chat: Chat, e: HistoryEntry): void {
    const i = chat.messages.findIndex((x) => x.msgId === e.msgId);
    if (i >= 0 && !chat.messages[i].problem) return;
    const mine = e.sender === this.me;
    const msg: ChatMessage = {
      msgId: e.msgId,
      seq: e.seq,
      sender: e.sender,
      kind: 'text',
      text: e.text ?? '',
      sentAt: e.sentAt,
      mine,
      tick: mine ? 'sent' : undefined,
      synced: true,
      expiresAt: e.expiresAt,
    };
    if (e.expiresAt && Date.parse(e.expiresAt) <= Date.now()) return;
    if (e.type === 'deleted') {
      msg.text = '';
      msg.deleted = true;
    } else if (e.type === 'system') {
      const payload = JSON.stringify(e.payload ?? {});
      const deletion = deletionOf(payload);
      if (deletion) {
        this.markDeleted(chat, deletion);
        return;
      }
      msg.kind = 'system';
      msg.text = systemText(payload, (u) => this.names.get(u) ?? u, this.me);
      this.noteTimer(chat, payload, e.seq);
    } else if (e.type !== 'text') {
      // A file's key is not in the history: nothing to show.
      return;
    }
    if (i >= 0) chat.messages[i] = msg;
    else chat.messages.push(msg);
    chat.lastSeq = Math.max(chat.lastSeq, e.seq);
  }

  /** A message from the server (read or live): decrypted and placed in its chat. `read`: it
   * came in a `readNewMessages` page, which has everything there is for this reader after the
   * cursor, so the cursor moves to it even over a gap: a message withheld from this user (its
   * sender is blocked here) leaves a seq this user never gets (as courier-client's cursors do). */
  private async take(m: RawMessage, read = false): Promise<void> {
    const chat = this.chatFor(m.sessionId, m.sessionId.startsWith('g_') ? 'group' : 'direct', []);
    if (m.seq === chat.cursorSeq + 1 || (read && m.seq > chat.cursorSeq)) {
      chat.cursorSeq = m.seq;
      chat.cursorMsgId = m.msgId;
    }
    chat.lastSeq = Math.max(chat.lastSeq, m.seq);
    if (m.type === 'deleted') {
      // A tombstone: the message's place, without its content.
      this.placeDeleted(chat, m);
      return;
    }
    if (chat.messages.some((x) => x.msgId === m.msgId && !x.problem)) return;
    // Already gone (the server returned it just before its expiry): not shown, not kept.
    if (m.expiresAt && Date.parse(m.expiresAt) <= Date.now()) return;
    let result: Decrypted = { kind: 'notEncrypted' };
    if (m.type === 'text' || m.type === 'media') {
      result = JSON.parse(this.dev.decrypt(JSON.stringify(m))) as Decrypted;
      await persist(this.dev);
    }
    this.place(m, result);
  }

  private place(m: RawMessage, d: Decrypted): void {
    const chat = this.chats.get(m.sessionId);
    if (!chat) return;
    if (m.type === 'handshake') return;
    const mine = m.sender === this.me;
    const msg: ChatMessage = {
      msgId: m.msgId,
      seq: m.seq,
      clientMsgId: m.clientMsgId ?? undefined,
      sender: m.sender,
      kind: m.type === 'media' ? 'media' : m.type === 'system' ? 'system' : 'text',
      text: '',
      sentAt: m.sentAt ?? '',
      mine,
      tick: mine ? 'sent' : undefined,
      expiresAt: m.expiresAt ?? undefined,
    };
    if (!mine) this.stopTyping(m.sessionId, m.sender);
    if (m.type === 'system') {
      const deletion = deletionOf(m.payload);
      if (deletion) {
        // The record of a deletion (read on sync, or the live event's message): not a line
        // of its own; the message it names loses its content.
        this.markDeleted(chat, deletion);
        return;
      }
      msg.text = systemText(m.payload, (u) => this.names.get(u) ?? u, this.me);
      if (this.noteTimer(chat, m.payload, m.seq)) {
        // A timer change is no group change: nothing to read again.
      } else if (chat.type === 'group') void this.nameChat(chat);
    } else if (d.kind === 'text') {
      msg.text = d.text ?? '';
      if (msg.kind === 'media') {
        const desc = parseMediaDescriptor(msg.text);
        if (desc) {
          const p = JSON.parse(desc) as MediaInfo & { caption?: string };
          msg.media = {
            descriptor: desc,
            contentType: p.contentType,
            fileName: p.fileName,
            caption: p.caption,
            size: p.size,
          };
          msg.text = p.caption ?? '';
        } else {
          msg.problem = 'not a media message this client can read';
        }
      }
    } else if (d.kind === 'held') {
      msg.problem = 'Waiting for this message’s key…';
    } else {
      msg.problem = `This message cannot be read (${d.error ?? 'not encrypted'})`;
    }
    const i = chat.messages.findIndex(
      (x) => x.msgId === m.msgId || (mine && m.clientMsgId && x.clientMsgId === m.clientMsgId),
    );
    if (i >= 0) {
      const old = chat.messages[i];
      if (old.tick && msg.tick) msg.tick = rankTick(old.tick, msg.tick);
      if (!msg.problem || old.problem) chat.messages[i] = msg;
    } else {
      chat.messages.push(msg);
      chat.messages.sort((a, b) => a.seq - b.seq);
    }
    this.applyWatermarks(chat);
  }

  /** A tombstone read from the server: the message it replaces loses its content, or it takes
   * its place if this device never had it. */
  private placeDeleted(chat: Chat, m: RawMessage): void {
    if (this.markDeleted(chat, m.msgId)) return;
    chat.messages.push({
      msgId: m.msgId,
      seq: m.seq,
      clientMsgId: m.clientMsgId ?? undefined,
      sender: m.sender,
      kind: 'text',
      text: '',
      sentAt: m.sentAt ?? '',
      mine: m.sender === this.me,
      tick: m.sender === this.me ? 'sent' : undefined,
      deleted: true,
    });
    chat.messages.sort((a, b) => a.seq - b.seq);
  }

  /** If `payload` records a disappearing-timer change, makes it the chat's timer unless a later
   * record is known already (sync may read records out of order with live events). */
  private noteTimer(chat: Chat, payload: string, seq: number): boolean {
    const t = timerUpdateOf(payload);
    if (!t) return false;
    if (!chat.timer || seq >= chat.timer.seq) chat.timer = { seconds: t.seconds, by: t.by, seq };
    return true;
  }

  /** Forgets a deleted message's content here too (text, caption, media, the file this browser
   * sent, and the text of edits made to it): the sealed chats kept in IndexedDB no longer hold
   * it. Returns whether the chat had the message. */
  private markDeleted(chat: Chat, msgId: string): boolean {
    const m = chat.messages.find((x) => x.msgId === msgId);
    if (!m) return false;
    m.deleted = true;
    m.text = '';
    m.media = undefined;
    m.problem = undefined;
    if (m.clientMsgId) this.sentFiles.delete(m.clientMsgId);
    chat.messages = chat.messages.filter((x) => !isEditOf(x, msgId));
    return true;
  }

  private async ackDelivered(chat: Chat, deliveredSeq: number): Promise<void> {
    const last = [...chat.messages].reverse().find((m) => !m.mine && m.seq <= chat.cursorSeq);
    if (!last || last.seq <= deliveredSeq) return;
    await this.conn
      .request('ackMessages', { sessionId: chat.sessionId, msgId: last.msgId, status: 'delivered' })
      .catch((e) => console.warn('ack delivered failed', e));
  }

  /** Marks the open chat read up to its last message (only while the page is visible). */
  ackReadIfOpen(): void {
    const chat = this.openChat ? this.chats.get(this.openChat) : undefined;
    if (!chat || document.visibilityState !== 'visible') return;
    const last = [...chat.messages].reverse().find((m) => !m.mine && m.seq > 0);
    if (!last || last.seq <= chat.readSeq) return;
    chat.readSeq = last.seq;
    this.touch();
    this.conn
      .request('ackMessages', { sessionId: chat.sessionId, msgId: last.msgId, status: 'read' })
      .catch((e) => console.warn('ack read failed', e));
  }

  /** Unread messages: reactions and edits are not messages of their own, so they do not count. */
  unread(chat: Chat): number {
    const bySeq = new Map(chat.messages.map((m) => [m.msgId, m]));
    return this.thread(chat).filter((s) => {
      const m = bySeq.get(s.msgId);
      return m && !m.mine && m.kind !== 'system' && m.seq > chat.readSeq;
    }).length;
  }

  /** The chat as it is shown: the wasm folds replies, reactions, edits and deletions into the
   * messages they are about (courier-client's `content::Thread`, as every client shows a chat).
   * System lines are not in it (`ChatMessage` has them). */
  thread(chat: Chat): Shown[] {
    const cached = this.threads.get(chat);
    if (cached && cached.rev === this.rev) return cached.shown;
    const input = chat.messages
      .filter((m) => m.kind !== 'system')
      .map((m) => ({
        msgId: m.msgId,
        sender: m.sender,
        sentAt: m.sentAt,
        type: m.kind === 'media' ? 'media' : 'text',
        text: m.kind === 'text' && !m.deleted ? m.text : undefined,
        deleted: m.deleted === true,
      }));
    let shown: Shown[];
    try {
      shown = JSON.parse(renderThread(JSON.stringify(input))) as Shown[];
    } catch (e) {
      console.warn('renderThread failed', e);
      shown = [];
    }
    this.threads.set(chat, { rev: this.rev, shown });
    return shown;
  }

  /** The recipients' watermarks for this chat's latest own message (after a reconnect). */
  private async refreshTicks(chat: Chat): Promise<void> {
    const last = [...chat.messages].reverse().find((m) => m.mine && m.seq > 0);
    if (!last || last.tick === 'read') return;
    try {
      const s = await this.conn.request<{ recipients: { userId: string; status: string }[] }>(
        'getMessageStatus',
        { msgId: last.msgId },
      );
      for (const r of s.recipients) this.raise(chat, r.userId, r.status, last.seq);
      this.applyWatermarks(chat);
    } catch (e) {
      console.warn('getMessageStatus failed', e);
    }
  }

  private raise(chat: Chat, userId: string, status: string, seq: number): void {
    const w = chat.peers[userId] ?? [0, 0];
    if (STATUS_RANK[status] >= 2) w[0] = Math.max(w[0], seq);
    if (STATUS_RANK[status] >= 3) w[1] = Math.max(w[1], seq);
    chat.peers[userId] = w;
  }

  private applyWatermarks(chat: Chat): void {
    const others = chat.members.filter((u) => u !== this.me);
    for (const m of chat.messages) {
      if (!m.mine || m.seq <= 0 || m.tick === 'failed') continue;
      let tick: Tick = 'read';
      for (const u of others) {
        const [d, r] = chat.peers[u] ?? [0, 0];
        const t: Tick = r >= m.seq ? 'read' : d >= m.seq ? 'delivered' : 'sent';
        if (STATUS_RANK[t] < STATUS_RANK[tick]) tick = t;
      }
      if (!others.length) tick = 'sent';
      m.tick = rankTick(m.tick ?? 'sent', tick);
    }
  }

  // ---- events ------------------------------------------------------------------------------------

  private async onEvent(e: Record<string, unknown>): Promise<void> {
    switch (e.event) {
      case 'message':
      case 'sessionStarted': {
        const m = e.message as RawMessage | undefined;
        if (!m) return;
        const chat = this.chats.get(m.sessionId);
        if (!chat) {
          await this.sync();
          return;
        }
        if (m.seq > chat.cursorSeq + 1) {
          await this.readChat(chat);
        } else {
          await this.take(m);
        }
        if (chat.messages.some((x) => x.problem?.startsWith('Waiting'))) {
          await this.drainDeviceQueue();
        }
        if (!m.sender || m.sender !== this.me) await this.ackDelivered(chat, 0);
        this.ackReadIfOpen();
        this.touch();
        return;
      }
      case 'deviceMessage': {
        const dm = e.message as Record<string, unknown>;
        if (await this.onDeviceMessage(dm)) {
          await this.conn.request('ackDeviceMessages', { ids: [dm.id] });
        }
        return;
      }
      case 'status': {
        const chat = this.chats.get(String(e.sessionId));
        if (!chat) return;
        this.raise(chat, String(e.userId), String(e.status), Number(e.upToSeq ?? 0));
        this.applyWatermarks(chat);
        this.touch();
        return;
      }
      case 'messageDeleted': {
        const chat = this.chats.get(String(e.sessionId));
        if (!chat) {
          await this.sync();
          return;
        }
        const m = e.message as RawMessage | undefined;
        // The record's seq moves the cursor; behind it, read what was missed (the tombstone too).
        if (m && m.seq > chat.cursorSeq + 1) await this.readChat(chat);
        else if (m) await this.take(m);
        this.markDeleted(chat, String(e.msgId));
        this.touch();
        return;
      }
      case 'typing': {
        const sessionId = String(e.sessionId);
        const userId = String(e.userId);
        if (userId === this.me) return;
        if (e.typing === true) {
          let users = this.typingNow.get(sessionId);
          if (!users) this.typingNow.set(sessionId, (users = new Map()));
          users.set(userId, Date.now() + TYPING_SHOWN_MS);
          // Shown until it goes stale: render again then.
          const key = `${sessionId} ${userId}`;
          window.clearTimeout(this.typingTimers.get(key));
          this.typingTimers.set(
            key,
            window.setTimeout(() => {
              this.typingTimers.delete(key);
              this.changed();
            }, TYPING_SHOWN_MS + 50),
          );
        } else {
          this.stopTyping(sessionId, userId);
        }
        this.changed();
        return;
      }
      case 'disappearingTimer': {
        const chat = this.chats.get(String(e.sessionId));
        const m = e.message as RawMessage | undefined;
        if (!chat || !m) {
          await this.sync();
          return;
        }
        // The record sets the chat's timer; behind it, read what was missed first.
        if (m.seq > chat.cursorSeq + 1) await this.readChat(chat);
        else await this.take(m);
        this.touch();
        return;
      }
      case 'groupUpdate': {
        const chat = this.chats.get(String(e.sessionId ?? e.groupId));
        const m = e.message as RawMessage | undefined;
        if (!chat || !m) {
          await this.sync();
          return;
        }
        await this.take(m);
        this.touch();
        return;
      }
      default:
        return;
    }
  }

  // ---- actions -----------------------------------------------------------------------------------

  /**
   * Runs `send` after the chat's earlier sends have finished, in the order they were asked for.
   * API Gateway runs a connection's frames concurrently, so two `sendMessage` frames in flight
   * at once could be stored in either order; one at a time per chat keeps the order the user
   * typed them in (docs/protocol.md).
   */
  private inTurn<T>(sessionId: string, send: () => Promise<T>): Promise<T> {
    const previous = this.sendTurns.get(sessionId) ?? Promise.resolve();
    const run = previous.then(send);
    const done = run.then(
      () => undefined,
      () => undefined,
    );
    this.sendTurns.set(sessionId, done);
    void done.then(() => {
      if (this.sendTurns.get(sessionId) === done) this.sendTurns.delete(sessionId);
    });
    return run;
  }

  /** Sends text: encrypted for every member device, then `sendMessage`. */
  async sendText(sessionId: string, text: string): Promise<void> {
    await this.sendEncoded(sessionId, { t: 'text', text });
  }

  /** Sends a reply quoting `to`. */
  async sendReply(sessionId: string, to: string, text: string): Promise<void> {
    await this.sendEncoded(sessionId, { t: 'reply', to, text });
  }

  /** Reacts to `to` with an emoji, replacing this user's earlier reaction; '' removes it. */
  async react(sessionId: string, to: string, emoji: string): Promise<void> {
    await this.sendEncoded(sessionId, { t: 'reaction', to, emoji });
  }

  /** New text for one of this user's text messages (others show it within 15 minutes). */
  async edit(sessionId: string, to: string, text: string): Promise<void> {
    await this.sendEncoded(sessionId, { t: 'edit', to, text });
  }

  /** Text, a reply, a reaction or an edit: courier-client's `Content`, encoded by the wasm,
   * sent end-to-end encrypted as an ordinary `text` message (the server cannot tell them apart). */
  private async sendEncoded(sessionId: string, content: Record<string, string>): Promise<void> {
    const plaintext = encodeContent(JSON.stringify(content));
    this.setTyping(sessionId, false);
    await this.sendContent(sessionId, 'text', plaintext, [], plaintext);
  }

  /** Deletes one of this user's messages for everyone (`deleteMessage`: its sender, within
   * 48 hours). Every member's device then shows "This message was deleted". */
  async deleteMessage(sessionId: string, msgId: string): Promise<void> {
    await this.conn.request('deleteMessage', { sessionId, msgId });
    const chat = this.chats.get(sessionId);
    if (chat) this.markDeleted(chat, msgId);
    this.touch();
  }

  /** Tells the chat whether this user is typing: `true` at most every 3 s while they type,
   * `false` once when they stop (composer emptied, message sent, chat left). Best effort. */
  setTyping(sessionId: string, typing: boolean): void {
    const last = this.typingSent;
    const now = Date.now();
    if (typing) {
      if (last && last.sessionId === sessionId && last.typing && now - last.at < TYPING_RESEND_MS) return;
      if (last && last.sessionId !== sessionId && last.typing) this.setTyping(last.sessionId, false);
    } else if (!last || last.sessionId !== sessionId || !last.typing) {
      return;
    }
    this.typingSent = { sessionId, typing, at: now };
    this.conn
      .request('sendTyping', { sessionId, typing })
      .catch((e) => console.warn('sendTyping failed', e));
  }

  /** The other members typing in a chat now. */
  typingIn(sessionId: string): string[] {
    const users = this.typingNow.get(sessionId);
    if (!users) return [];
    const now = Date.now();
    return [...users].filter(([, until]) => until > now).map(([u]) => u);
  }

  private stopTyping(sessionId: string, userId: string): void {
    this.typingNow.get(sessionId)?.delete(userId);
  }

  /** Reads whether a person is online, or when they were last seen (`getProfile`; nothing when
   * their privacy settings hide it). */
  async refreshPresence(userId: string): Promise<void> {
    try {
      const p = await this.conn.request<Presence & { name?: string | null }>('getProfile', { userId });
      this.presence.set(userId, { online: p.online, lastSeen: p.lastSeen });
      if (p.name) this.names.set(userId, p.name);
    } catch (e) {
      console.warn('getProfile failed', e);
      this.presence.delete(userId);
    }
    this.changed();
  }

  // ---- blocking and reporting (docs/protocol.md, "Blocking."): the server withholds a blocked
  // person's direct messages from this user; nothing is filtered here.

  /** Reads whom this user blocked (`listBlocked`). */
  async refreshBlocked(): Promise<string[]> {
    const r = await this.conn.request<{ userIds: string[] }>('listBlocked', {});
    this.blocked.clear();
    for (const u of r.userIds) this.blocked.add(u);
    this.changed();
    return r.userIds;
  }

  /** Blocks (`blockUser`) or unblocks (`unblockUser`) someone. Sending to them stays allowed. */
  async setBlocked(userId: string, block: boolean): Promise<void> {
    const r = await this.conn.request<{ userId: string; blocked: boolean }>(
      block ? 'blockUser' : 'unblockUser',
      { userId },
    );
    if (r.blocked) this.blocked.add(userId);
    else this.blocked.delete(userId);
    this.changed();
  }

  /** What a report of `userId` from this chat attaches: their last (at most 5) messages here
   * with the text this page shows for them (a reply's own text, an edit's new text, a file's
   * caption). Deleted, unreadable and textless ones (a picture without a caption) are left out. */
  reportable(chat: Chat, userId: string): { msgId: string; text: string }[] {
    const byId = new Map(chat.messages.map((m) => [m.msgId, m]));
    const theirs: { msgId: string; text: string }[] = [];
    for (const s of this.thread(chat)) {
      const m = byId.get(s.msgId);
      if (!m || s.sender !== userId || s.deleted || m.deleted || m.problem) continue;
      const text = m.kind === 'media' ? m.text : s.text ?? '';
      if (text) theirs.push({ msgId: s.msgId, text });
    }
    return theirs.slice(-REPORTED_MESSAGES);
  }

  /** Reports someone for moderation with the messages `reportable` gives (`reportUser`), which
   * also blocks them. Returns the report's id. */
  async reportUser(userId: string, messages: { msgId: string; text: string }[]): Promise<string> {
    const r = await this.conn.request<{ reportId: string; blocked: boolean }>('reportUser', {
      userId,
      messages,
    });
    if (r.blocked) this.blocked.add(userId);
    this.changed();
    return r.reportId;
  }

  private async sendContent(
    sessionId: string,
    type: 'text' | 'media',
    content: string,
    attachments: string[],
    shown: string,
    media?: MediaInfo,
    clientMsgId = `w-${crypto.randomUUID()}`,
  ): Promise<void> {
    const chat = this.chats.get(sessionId);
    if (!chat) throw new Error('no such chat');
    const local: ChatMessage = {
      msgId: `pending:${clientMsgId}`,
      seq: Number.MAX_SAFE_INTEGER,
      clientMsgId,
      sender: this.me,
      kind: type,
      text: shown,
      media,
      sentAt: new Date().toISOString(),
      mine: true,
      tick: 'pending',
    };
    chat.messages.push(local);
    this.touch();
    try {
      if (chat.type === 'group' || !chat.members.length) await this.nameChat(chat);
      const payload = await this.dev.encryptFor(this.conn.caller, sessionId, chat.members, content);
      await persist(this.dev);
      const params: Record<string, unknown> = { sessionId, clientMsgId, type, payload };
      if (attachments.length) params.attachments = attachments;
      // Sent again with the same clientMsgId after a lost reply: the server keeps one.
      const r = await this.inTurn(sessionId, async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await this.conn.request<{ msgId: string; seq: number; sentAt: string; expiresAt?: string }>(
              'sendMessage',
              params,
            );
          } catch (e) {
            if (!(e instanceof ApiError) || e.code !== 'TRANSPORT' || attempt >= 5) throw e;
            await new Promise((res) => setTimeout(res, 1000 * (attempt + 1)));
          }
        }
      });
      local.msgId = r.msgId;
      local.seq = r.seq;
      local.sentAt = r.sentAt;
      if (r.expiresAt) local.expiresAt = r.expiresAt;
      local.tick = 'sent';
      chat.messages.sort((a, b) => a.seq - b.seq);
      if (r.seq === chat.cursorSeq + 1) {
        chat.cursorSeq = r.seq;
        chat.cursorMsgId = r.msgId;
      }
      chat.lastSeq = Math.max(chat.lastSeq, r.seq);
      this.applyWatermarks(chat);
    } catch (e) {
      local.tick = 'failed';
      local.problem = `Not sent: ${e instanceof ApiError ? e.message : wasmError(e).message}`;
      this.report(e);
    } finally {
      this.touch();
    }
  }

  /** Encrypts a file in the wasm, uploads the ciphertext with progress, sends the descriptor. */
  async sendFile(
    sessionId: string,
    file: File,
    caption: string,
    onProgress: (sent: number, total: number) => void,
  ): Promise<void> {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const enc = encryptFile(bytes, file.type, file.name, caption || undefined);
    const ciphertext = enc.ciphertext;
    const up = await this.conn.request<{
      mediaId: string;
      uploadUrl: string;
      uploadMethod?: string;
      uploadHeaders?: Record<string, string>;
    }>('createMediaUpload', { contentType: 'application/octet-stream', size: ciphertext.length });
    await upload(up.uploadUrl, up.uploadMethod ?? 'PUT', up.uploadHeaders ?? {}, ciphertext, onProgress);
    const descriptor = enc.descriptor(up.mediaId);
    enc.free();
    const media: MediaInfo = {
      descriptor,
      contentType: file.type,
      fileName: file.name,
      caption: caption || undefined,
      size: bytes.length,
    };
    const clientMsgId = `w-${crypto.randomUUID()}`;
    this.sentFiles.set(clientMsgId, new Blob([bytes as BlobPart], { type: file.type }));
    await this.sendContent(sessionId, 'media', descriptor, [up.mediaId], caption, media, clientMsgId);
  }

  /** Downloads, checks and decrypts a received file. */
  async fetchFile(media: MediaInfo): Promise<Blob> {
    const { mediaId } = JSON.parse(media.descriptor) as { mediaId: string };
    const d = await this.conn.request<{ downloadUrl: string }>('getMediaDownload', { mediaId });
    const r = await fetch(d.downloadUrl);
    if (!r.ok) throw new ApiError('DOWNLOAD', `the download was refused (HTTP ${r.status})`);
    const plain = decryptFile(media.descriptor, new Uint8Array(await r.arrayBuffer()));
    return new Blob([plain as BlobPart], { type: media.contentType || 'application/octet-stream' });
  }

  /** Opens (or finds) the direct chat with a phone number. */
  async startChat(phone: string): Promise<string> {
    const u = await this.conn.request<{ userId: string }>('lookupUser', { phone });
    const r = await this.conn.request<{ sessionId: string }>('initiateDirectChatSession', {
      peerUserId: u.userId,
    });
    this.chatFor(r.sessionId, 'direct', [this.me, u.userId]);
    this.touch();
    return r.sessionId;
  }

  /** Creates a group with members given by phone number. */
  async createGroup(name: string, phones: string[]): Promise<string> {
    const ids: string[] = [];
    for (const p of phones) {
      const u = await this.conn.request<{ userId: string }>('lookupUser', { phone: p });
      ids.push(u.userId);
    }
    const r = await this.conn.request<{ groupId: string }>('initiateGroupChatSession', {
      name,
      members: ids,
    });
    this.chatFor(r.groupId, 'group', [this.me, ...ids]);
    await this.sync();
    return r.groupId;
  }

  /** Posts a text status, encrypted once for the audience (getStatusAudience). */
  async postStatus(text: string): Promise<void> {
    const audience: string[] = [];
    let after: string | null = null;
    for (;;) {
      const r: { userIds: string[]; hasMore: boolean } = await this.conn.request(
        'getStatusAudience',
        { after },
      );
      audience.push(...r.userIds);
      if (!r.hasMore || !r.userIds.length) break;
      after = r.userIds[r.userIds.length - 1];
    }
    const payload = await this.dev.encryptStatus(this.conn.caller, audience, text);
    await persist(this.dev);
    const r = await this.conn.request<{ statusId: string }>('postStatus', {
      payload,
      attachments: [],
    });
    this.ownStatuses.set(r.statusId, text);
  }

  /** The live statuses of the people this user chats with (and its own), decrypted. */
  async statuses(): Promise<StatusItem[]> {
    const people = new Set<string>([this.me]);
    for (const c of this.chats.values()) if (c.type === 'direct') c.members.forEach((m) => people.add(m));
    await this.drainDeviceQueue();
    const out: StatusItem[] = [];
    for (const userId of people) {
      try {
        const r = await this.conn.request<{ statuses: Record<string, string>[] }>('viewStatus', {
          userId,
        });
        for (const s of r.statuses ?? []) {
          let text = this.ownStatuses.get(s.statusId);
          if (text === undefined) {
            try {
              text = this.dev.decryptStatus(JSON.stringify(s));
            } catch (e) {
              text = `(cannot be read: ${wasmError(e).message})`;
            }
          }
          out.push({
            userId,
            statusId: s.statusId,
            text,
            postedAt: s.postedAt,
            expiresAt: s.expiresAt,
          });
        }
      } catch (e) {
        console.warn('viewStatus failed', e);
      }
    }
    await persist(this.dev);
    return out;
  }

  /** The safety number with a chat's peer, both sides' device fingerprints, and whether the
   * peer's keys are the pinned ones. */
  async safety(userId: string): Promise<Safety> {
    const trusted = await this.dev.isTrusted(this.conn.caller, userId);
    const s = JSON.parse(await this.dev.safety(this.conn.caller, userId)) as Omit<Safety, 'trusted'>;
    await persist(this.dev);
    return { ...s, trusted };
  }

  /** Trusts the peer's current keys (after comparing safety numbers), then syncs again so held
   * messages and device messages are read. */
  async acceptIdentity(userId: string): Promise<number> {
    const n = await this.dev.acceptIdentity(this.conn.caller, userId);
    await persist(this.dev);
    this.lastError = null;
    await this.sync();
    return n;
  }

  /** A group's name, description and members with their roles. */
  group(groupId: string): Promise<GroupInfo> {
    return this.conn.request<GroupInfo>('getGroup', { groupId });
  }

  /** Adds a member by phone number (admins). */
  async addToGroup(groupId: string, phone: string): Promise<void> {
    const u = await this.conn.request<{ userId: string }>('lookupUser', { phone });
    await this.conn.request('addUserToGroup', { groupId, userId: u.userId });
    const chat = this.chats.get(groupId);
    if (chat) await this.nameChat(chat);
  }

  /** Leaves a group: nothing new is read or sent there afterwards. */
  async leaveGroup(groupId: string): Promise<void> {
    await this.conn.request('removeUserFromGroup', { groupId, userId: this.me });
    this.chats.delete(groupId);
    if (this.openChat === groupId) this.openChat = null;
    this.touch();
  }

  /** Removes this device from the account (`removeDevice`) and forgets everything kept here:
   * credentials, keys, chats. A device the server no longer knows is forgotten all the same. */
  async unlink(): Promise<void> {
    try {
      await this.conn.request('removeDevice', { deviceId: this.creds.deviceId });
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== 'NOT_FOUND') throw e;
    }
    this.conn.stop();
    window.clearTimeout(this.saveTimer);
    this.saveTimer = -1;
    await db.clear();
  }

  /** The other member of a direct chat. */
  peerOf(chat: Chat): string | undefined {
    return chat.type === 'direct' ? chat.members.find((m) => m !== this.me) : undefined;
  }

  getSettings(): Promise<Settings> {
    return this.conn.request<Settings>('getSettings', {});
  }

  updateSettings(s: Partial<Settings>): Promise<Settings> {
    return this.conn.request<Settings>('updateSettings', s as Record<string, unknown>);
  }

  // ---- two-step verification (docs/protocol.md): this browser is a companion, so it checks
  // the PIN, and changes or removes it only with the current one; it never sets the first.

  /** Whether `pin` is the account's registration PIN. Wrong ones count against the account's
   * small daily budget (LIMIT_EXCEEDED past it); NOT_FOUND when it has none. */
  async checkPin(pin: string): Promise<boolean> {
    const r = await this.conn.request<{ correct: boolean }>('checkRegistrationPin', { pin });
    return r.correct === true;
  }

  /** Changes the PIN, proving the current one (WRONG_PIN when it is not). */
  async changePin(currentPin: string, pin: string): Promise<void> {
    await this.conn.request('setRegistrationPin', { pin, currentPin });
  }

  /** Turns two-step verification off, proving the current PIN. */
  async removePin(currentPin: string): Promise<void> {
    await this.conn.request('removeRegistrationPin', { currentPin });
  }
}

export interface GroupInfo {
  groupId: string;
  name: string;
  description?: string | null;
  members: { userId: string; role: 'admin' | 'member' }[];
}

export interface Safety {
  safetyNumber: string;
  /** [deviceId, fingerprint] */
  mine: [string, string][];
  /** [deviceId, fingerprint, primary] */
  theirs: [string, string, boolean][];
  trusted: boolean;
}

export interface Settings {
  display: { name: string | null; about: string | null; avatar?: string | null };
  /** getSettings only: whether the account has a registration PIN (two-step verification). */
  registrationPin?: boolean;
  privacy: {
    lastSeen: string;
    profilePhoto: string;
    about: string;
    status: string;
    readReceipts: boolean;
    groupsAdd: string;
  };
}

function rankTick(a: Tick, b: Tick): Tick {
  const r = (t: Tick) => (t === 'failed' ? -1 : t === 'pending' ? 0 : STATUS_RANK[t]);
  return r(a) >= r(b) ? a : b;
}

/** The message a `system` deletion record names (`{"update": "messageDeleted", "msgId"}`). */
function deletionOf(payload: string): string | null {
  try {
    const p = JSON.parse(payload) as { update?: string; msgId?: string };
    return p.update === 'messageDeleted' && p.msgId ? p.msgId : null;
  } catch {
    return null;
  }
}

/** A `system` record of a disappearing-timer change (`{"update": "disappearingTimer", "seconds",
 * "by"}`). */
function timerUpdateOf(payload: string): { seconds: number; by: string } | null {
  try {
    const p = JSON.parse(payload) as { update?: string; seconds?: number; by?: string };
    return p.update === 'disappearingTimer' && typeof p.seconds === 'number'
      ? { seconds: p.seconds, by: p.by ?? '' }
      : null;
  } catch {
    return null;
  }
}

/** A message's seq from its id (`{sessionId}.{seq}`, docs/protocol.md). */
function seqOf(msgId: string): number | null {
  const n = Number(msgId.slice(msgId.lastIndexOf('.') + 1));
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** A disappearing timer in words: "24 hours", "7 days", "90 days" (and a test deployment's
 * short value, e.g. "5 seconds"). */
export function timerText(seconds: number): string {
  const unit = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;
  if (seconds % 86_400 === 0 && seconds !== 86_400) return unit(seconds / 86_400, 'day');
  if (seconds % 3600 === 0) return unit(seconds / 3600, 'hour');
  if (seconds % 60 === 0) return unit(seconds / 60, 'minute');
  return unit(seconds, 'second');
}

/** The same, short, for the chat header's badge: "24h", "7d", "90d", "5s". */
export function timerBadge(seconds: number): string {
  if (seconds % 86_400 === 0 && seconds !== 86_400) return `${seconds / 86_400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** Whether a message is an edit of `msgId` (courier-client's `Content` encoding: the mark
 * U+0001, then JSON): its new text goes when the message is deleted. */
function isEditOf(m: ChatMessage, msgId: string): boolean {
  if (m.kind !== 'text' || !m.text.startsWith('\u0001')) return false;
  try {
    const c = JSON.parse(m.text.slice(1)) as { t?: string; to?: string };
    return c.t === 'edit' && c.to === msgId;
  } catch {
    return false;
  }
}

function systemText(payload: string, name: (u: string) => string, me: string): string {
  try {
    const p = JSON.parse(payload) as { update?: string; userId?: string; by?: string; seconds?: number };
    const who = p.userId ? name(p.userId) : 'someone';
    switch (p.update) {
      case 'disappearingTimer': {
        // As WhatsApp words it, with "You" for this user (on any of their devices).
        const by = p.by === me ? 'You' : name(p.by ?? '');
        return p.seconds
          ? `${by} turned on disappearing messages. New messages will disappear after ${timerText(p.seconds)}.`
          : `${by} turned off disappearing messages.`;
      }
      case 'created':
        return `${name(p.by ?? '')} created the group`;
      case 'memberAdded':
        return `${who} was added`;
      case 'memberRemoved':
        return `${who} left or was removed`;
      case 'promoted':
        return `${who} is now an admin`;
      default:
        return p.update ?? 'group updated';
    }
  } catch {
    return 'group updated';
  }
}
