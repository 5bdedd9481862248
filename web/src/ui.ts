// The page: linking (QR code and text), then chats, conversation, status and settings. Plain
// DOM; every text from the network goes in through textContent, never as HTML.

import QRCode from 'qrcode';
import { DELETE_WINDOW_MS, EDIT_WINDOW_MS, TIMER_CHOICES, timerBadge, timerText } from './client';
import { ApiError } from './net';
import type { Chat, ChatMessage, Client, Settings, Shown } from './client';
import type { ConnState } from './net';

type Attrs = Record<string, string | boolean | undefined>;

/** Creates an element with attributes and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

/** The reactions offered (as WhatsApp's quick row). */
const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

const TICK_LABEL: Record<string, string> = {
  pending: 'sending',
  sent: 'sent',
  delivered: 'delivered',
  read: 'read',
  failed: 'not sent',
};
const TICK_GLYPH: Record<string, string> = {
  pending: '…',
  sent: '✓',
  delivered: '✓✓',
  read: '✓✓',
  failed: '!',
};

// ---- linking ----------------------------------------------------------------------------------

export interface LinkView {
  show(code: string, expiresInSeconds: number): Promise<void>;
  error(text: string, retry: () => void): void;
}

export function linkScreen(root: HTMLElement): LinkView {
  const qr = h('canvas', { id: 'link-qr', role: 'img', 'aria-label': 'The link code as a QR code' });
  const code = h('output', { id: 'link-code', 'aria-live': 'polite' });
  const cmd = h('code', { id: 'link-command' });
  const note = h('p', { id: 'link-note', role: 'status' });
  root.replaceChildren(
    h(
      'main',
      { class: 'link' },
      h('h1', { text: 'Link Courier Web to your phone' }),
      h(
        'ol',
        {},
        h('li', { text: 'On your phone (the primary device), approve this browser:' }),
        h('li', {}, 'With the CLI: ', cmd),
      ),
      h('figure', {}, qr, h('figcaption', {}, 'Link code: ', code)),
      note,
    ),
  );
  return {
    async show(text, expires) {
      code.value = text;
      code.textContent = text;
      cmd.textContent = `courier devices approve ${text}`;
      note.textContent = `Waiting for approval (the code is valid ${Math.round(expires / 60)} minutes)…`;
      await QRCode.toCanvas(qr, text, { width: 240, margin: 2 });
    },
    error(text, retry) {
      note.textContent = text;
      const again = h('button', { type: 'button', text: 'Get a new code' });
      again.onclick = retry;
      note.append(' ', again);
    },
  };
}

// ---- the app ----------------------------------------------------------------------------------

export class AppView {
  private readonly list = h('ul', { class: 'chats', 'aria-label': 'Chats' });
  private readonly log = h('ol', { class: 'messages', role: 'log', 'aria-label': 'Messages' });
  private readonly title = h('h2', { id: 'chat-title', text: 'No chat open' });
  /** "typing…", "online" or "last seen …" under the title. */
  private readonly presence = h('p', { id: 'chat-presence', class: 'presence', 'aria-live': 'polite' });
  /** What the composer is doing besides a new message: replying to or editing one. */
  private context: { kind: 'reply' | 'edit'; msgId: string } | null = null;
  private readonly contextBar = h('div', { id: 'composer-context', class: 'composer-context', hidden: true });
  /** The message whose reaction choices are open. */
  private reactingTo: string | null = null;
  private readonly state = h('span', { class: 'conn', role: 'status', id: 'conn-state' });
  private readonly error = h('p', { class: 'error', role: 'alert', id: 'error' });
  private readonly composer: HTMLFormElement;
  private readonly input = h('textarea', {
    id: 'message-input',
    name: 'message',
    rows: '1',
    placeholder: 'Type a message',
    autocomplete: 'off',
  });
  private readonly file = h('input', { type: 'file', id: 'file-input', name: 'file' });
  private readonly progress = h('progress', {
    id: 'upload-progress',
    max: '100',
    value: '0',
    hidden: true,
    'aria-label': 'Upload progress',
  });
  private readonly conversation: HTMLElement;
  private readonly side: HTMLElement;
  private readonly panel = h('section', { class: 'panel', id: 'panel', hidden: true });
  private readonly info = h('button', { type: 'button', id: 'group-info', class: 'verify', text: 'Group info' });
  private readonly verify = h('button', {
    type: 'button',
    id: 'verify',
    class: 'verify',
    text: 'Verify',
    title: 'Compare the safety number with your contact',
  });
  /** A direct chat's Block / Unblock, and Report… (which also blocks). */
  private readonly blockButton = h('button', { type: 'button', id: 'block', class: 'verify' });
  private readonly reportButton = h('button', {
    type: 'button',
    id: 'report',
    class: 'verify',
    text: 'Report…',
    title: 'Report this contact to Courier’s moderators (this also blocks them)',
  });
  /** Over the composer while the open chat's peer is blocked. */
  private readonly blockedNotice = h(
    'div',
    { id: 'blocked-notice', class: 'blocked-notice', role: 'status', hidden: true },
  );
  /** The open chat's disappearing-message timer: the badge beside its name (hidden when off)
   * and the control that changes it. */
  private readonly timerText = h('span', { class: 'timer-text' });
  private readonly timerBadge = h('span', { id: 'timer-badge', class: 'timer-badge', hidden: true }, icon('timer'), this.timerText);
  private readonly timerSelect = h('select', { id: 'disappearing', name: 'disappearing' });
  /** What the last block or report in the open chat did (or why it failed). */
  private readonly chatNote = h('p', { id: 'chat-note', class: 'chat-note', role: 'status' });
  private objectUrls = new Map<string, string>();

  constructor(
    private readonly root: HTMLElement,
    private readonly client: Client,
  ) {
    this.composer = h(
      'form',
      { class: 'composer', 'aria-label': 'Send a message' },
      this.contextBar,
      h('label', { for: 'message-input', class: 'visually-hidden', text: 'Message' }),
      this.input,
      h('label', { for: 'file-input', class: 'attach', title: 'Attach a file' }, icon('clip'), h('span', { class: 'visually-hidden', text: 'Attach a file' })),
      this.file,
      h('button', { type: 'submit', id: 'send', text: 'Send' }),
      this.progress,
    );
    this.composer.onsubmit = (e) => {
      e.preventDefault();
      void this.send();
    };
    this.input.onkeydown = (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        void this.send();
      } else if (e.key === 'Escape' && this.context) {
        this.setContext(null);
      }
    };
    // Typing: true while there is something in the composer (the client sends it at most every
    // 3 s), false once it is emptied.
    this.input.oninput = () => {
      const id = this.client.openChat;
      if (id && this.context?.kind !== 'edit') this.client.setTyping(id, this.input.value.trim() !== '');
    };
    this.file.onchange = () => void this.sendFile();
    // The messages' controls (Reply, React, Edit, Delete, the emoji), by delegation: the list is
    // patched in place, so its nodes carry data, not handlers.
    this.log.onclick = (e) => {
      const b = (e.target as Element).closest('button[data-action]') as HTMLButtonElement | null;
      const li = b?.closest('li[data-msg]') as HTMLElement | null;
      if (b && li) void this.messageAction(b.dataset.action!, li.dataset.msg!, b.dataset.emoji);
    };

    const back = h('button', { type: 'button', class: 'back', 'aria-label': 'Back to chats', text: '←' });
    back.onclick = () => this.open(null);
    this.verify.onclick = () => void this.safetyPanel();
    this.info.onclick = () => void this.groupPanel();
    this.blockButton.onclick = () => void this.toggleBlock();
    this.reportButton.onclick = () => void this.report();
    this.timerSelect.onchange = () => void this.changeTimer(Number(this.timerSelect.value));
    this.conversation = h(
      'section',
      { class: 'conversation', 'aria-labelledby': 'chat-title' },
      h(
        'header',
        {},
        back,
        h('div', { class: 'who' }, h('div', { class: 'title-row' }, this.title, this.timerBadge), this.presence),
        h(
          'label',
          { class: 'timer-control', title: 'Disappearing messages' },
          icon('timer'),
          h('span', { class: 'visually-hidden', text: 'Disappearing messages' }),
          this.timerSelect,
        ),
        this.verify,
        this.blockButton,
        this.reportButton,
        this.info,
      ),
      this.chatNote,
      this.log,
      this.blockedNotice,
      this.composer,
    );

    const tab = (label: string, id: string, f: () => void) => {
      const b = h('button', { type: 'button', id, text: label });
      b.onclick = f;
      return b;
    };
    this.side = h(
      'nav',
      { class: 'side', 'aria-label': 'Chats and settings' },
      h(
        'div',
        { class: 'tabs' },
        tab('New chat', 'new-chat', () => this.newChat()),
        tab('New group', 'new-group', () => this.newGroup()),
        tab('Status', 'status-tab', () => void this.statusPanel()),
        tab('Settings', 'settings-tab', () => void this.settingsPanel()),
      ),
      this.list,
    );
    root.replaceChildren(
      h('header', { class: 'top' }, h('h1', { text: 'Courier Web' }), this.state),
      this.error,
      h('div', { class: 'layout' }, this.side, this.conversation, this.panel),
    );
    this.open(null);
    document.addEventListener('visibilitychange', () => this.client.ackReadIfOpen());
  }

  setConn(s: ConnState): void {
    const text: Record<ConnState, string> = {
      connecting: 'Connecting…',
      online: 'Online',
      offline: 'Offline: reconnecting',
    };
    this.state.textContent = text[s];
    this.state.dataset.state = s;
  }

  render(): void {
    this.root.dataset.synced = String(this.client.synced);
    this.error.textContent = this.client.lastError ?? '';
    const chats = [...this.client.chats.values()].sort((a, b) => lastAt(b).localeCompare(lastAt(a)));
    this.list.replaceChildren(...chats.map((c) => this.chatItem(c)));
    const open = this.client.openChat ? this.client.chats.get(this.client.openChat) : undefined;
    if (open) this.renderConversation(open);
  }

  private chatItem(c: Chat): HTMLLIElement {
    const unread = this.client.unread(c);
    const shown = this.client.thread(c);
    const lastShown = shown[shown.length - 1];
    const last = lastShown && c.messages.find((m) => m.msgId === lastShown.msgId);
    const b = h(
      'button',
      {
        type: 'button',
        class: 'chat',
        'data-session': c.sessionId,
        'aria-current': this.client.openChat === c.sessionId ? 'true' : undefined,
      },
      h('span', { class: 'name' }, c.type === 'group' ? icon('group') : null, displayName(c)),
      h('span', { class: 'preview', text: last ? preview(last, lastShown) : '' }),
      unread
        ? h('span', { class: 'unread', 'aria-label': `${unread} unread`, text: String(unread) })
        : null,
    );
    b.onclick = () => this.open(c.sessionId);
    return h('li', {}, b);
  }

  open(sessionId: string | null): void {
    const previous = this.client.openChat;
    if (previous && previous !== sessionId) {
      this.client.setTyping(previous, false);
      this.setContext(null);
    }
    this.reactingTo = null;
    if (previous !== sessionId) this.chatNote.textContent = '';
    this.client.openChat = sessionId;
    const chat = sessionId ? this.client.chats.get(sessionId) : undefined;
    const peer = chat && this.client.peerOf(chat);
    if (peer) {
      void this.client.refreshPresence(peer);
      // Whether the peer is blocked, read again each time a direct chat opens (another device
      // of this account may have changed it).
      this.client.refreshBlocked().catch((e) => console.warn('listBlocked failed', e));
    }
    this.panel.hidden = true;
    this.root.dataset.view = sessionId ? 'conversation' : 'list';
    this.conversation.hidden = !sessionId;
    if (sessionId) {
      const c = this.client.chats.get(sessionId);
      if (c) this.renderConversation(c);
      this.client.ackReadIfOpen();
      this.input.focus();
    }
    this.render();
  }

  private renderConversation(c: Chat): void {
    this.title.replaceChildren(...(c.type === 'group' ? [icon('group')] : []), displayName(c));
    const peer = this.client.peerOf(c);
    const blocked = peer !== undefined && this.client.blocked.has(peer);
    this.verify.hidden = !peer;
    this.blockButton.hidden = !peer;
    this.reportButton.hidden = !peer;
    this.blockButton.textContent = blocked ? 'Unblock' : 'Block';
    this.info.hidden = c.type !== 'group';
    if (this.blockedNotice.hidden === blocked) {
      // Changed only when it changes: a status region announces each new text.
      this.blockedNotice.hidden = !blocked;
      this.blockedNotice.replaceChildren(
        ...(blocked ? [h('p', { text: 'You blocked this contact. Unblock to receive their messages.' })] : []),
      );
    }
    this.presence.textContent = this.presenceText(c);
    this.renderTimer(c);
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    // Patch the list in place (a new message is one addition for screen readers, not a new list).
    const shown = new Map(this.client.thread(c).map((s) => [s.msgId, s]));
    const byId = new Map(c.messages.map((m) => [m.msgId, m]));
    // System lines in their place; messages as folded (reactions and edits are not lines).
    // The phone's history (sent when this browser was linked) under a divider of its own.
    const firstSynced = c.messages.find((m) => m.synced)?.msgId;
    const wanted = c.messages.flatMap((m) => {
      const divider =
        m.msgId === firstSynced
          ? [h('li', { class: 'synced-divider', role: 'separator', text: 'Synced from your phone' })]
          : [];
      if (m.kind === 'system') return [...divider, this.systemItem(m)];
      const s = shown.get(m.msgId);
      return s ? [...divider, this.messageItem(c, m, s, byId)] : divider;
    });
    wanted.forEach((w, i) => {
      const cur = this.log.children[i];
      if (!cur) this.log.append(w);
      else if (!cur.isEqualNode(w)) cur.replaceWith(w);
    });
    while (this.log.children.length > wanted.length) this.log.lastElementChild!.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  /** The badge (a stopwatch and "7d") and the control's current choice (with a test deployment's short
   * timer, set elsewhere, as an extra choice while it is the chat's). */
  private renderTimer(c: Chat): void {
    const seconds = this.client.timerOf(c);
    const badge = seconds ? timerBadge(seconds) : '';
    if (this.timerText.textContent !== badge) {
      this.timerText.textContent = badge;
      this.timerBadge.hidden = !seconds;
      this.timerBadge.title = seconds ? `Disappearing messages: ${timerText(seconds)}` : '';
      this.timerBadge.dataset.seconds = String(seconds);
    }
    const choices = TIMER_CHOICES.some((t) => t.seconds === seconds)
      ? TIMER_CHOICES
      : [...TIMER_CHOICES, { seconds, label: timerText(seconds) }];
    const wanted = choices.map((t) => `${t.seconds}:${t.label}`).join(',');
    if (this.timerSelect.dataset.choices !== wanted) {
      this.timerSelect.dataset.choices = wanted;
      this.timerSelect.replaceChildren(...choices.map((t) => h('option', { value: String(t.seconds), text: t.label })));
    }
    if (!this.timerPending) this.timerSelect.value = String(seconds);
  }

  /** While a change of the timer is being asked for, the control keeps the user's choice. */
  private timerPending = false;

  /** Sets the open chat's timer; a refusal (in a group only admins may) says so and changes
   * nothing. */
  private async changeTimer(seconds: number): Promise<void> {
    const id = this.client.openChat;
    if (!id) return;
    this.timerPending = true;
    this.chatNote.textContent = '';
    try {
      await this.client.setDisappearingTimer(id, seconds);
    } catch (e) {
      this.chatNote.textContent =
        e instanceof ApiError && e.code === 'FORBIDDEN'
          ? 'Only group admins can change disappearing messages. Nothing was changed.'
          : `Could not change disappearing messages: ${String((e as Error).message ?? e)}`;
    } finally {
      this.timerPending = false;
      this.render();
    }
  }

  private systemItem(m: ChatMessage): HTMLLIElement {
    return h('li', { class: 'system', 'data-msg': m.msgId, text: m.text });
  }

  private nameOf(userId: string): string {
    return userId === this.client.me ? 'You' : this.client.names.get(userId) ?? userId;
  }

  /** "typing…" while a member types, else a direct chat's peer's "online" / "last seen …"
   * (nothing when their privacy settings hide it). */
  private presenceText(c: Chat): string {
    const typing = this.client.typingIn(c.sessionId);
    if (typing.length && c.type === 'direct') return 'typing…';
    if (typing.length) return `${typing.map((u) => this.nameOf(u)).join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…`;
    const peer = this.client.peerOf(c);
    const p = peer ? this.client.presence.get(peer) : undefined;
    if (p?.online) return 'online';
    if (p?.lastSeen) return `last seen ${lastSeenText(p.lastSeen)}`;
    return '';
  }

  private messageItem(c: Chat, m: ChatMessage, s: Shown, byId: Map<string, ChatMessage>): HTMLLIElement {
    const body = h('div', { class: 'body' });
    if (s.deleted) {
      body.append(h('p', { class: 'deleted', text: 'This message was deleted' }));
    } else {
      if (m.problem) body.append(h('em', { class: 'problem', text: m.problem }));
      if (s.replyTo) body.append(this.quoteNode(s.replyTo, byId));
      if (m.media) body.append(this.mediaNode(m));
      const text = m.kind === 'media' ? m.text : s.text;
      if (text) body.append(h('p', { class: 'text', text }));
    }
    const reactions = Object.entries(s.reactions ?? {});
    const counts = new Map<string, string[]>();
    for (const [user, emoji] of reactions) counts.set(emoji, [...(counts.get(emoji) ?? []), user]);
    const time = m.sentAt ? new Date(m.sentAt) : null;
    const age = time ? Date.now() - time.getTime() : Infinity;
    const sent = !m.msgId.startsWith('pending:') && m.tick !== 'failed';
    const act = (action: string, label: string) => h('button', { type: 'button', 'data-action': action, text: label });
    const mine = s.reactions?.[this.client.me];
    return h(
      'li',
      {
        class: `message${m.mine ? ' mine' : ''}${s.deleted ? ' deleted' : ''}${m.synced ? ' synced' : ''}`,
        'data-msg': m.msgId,
        'data-expires': m.expiresAt,
      },
      c.type === 'group' && !m.mine ? h('span', { class: 'sender', text: this.nameOf(m.sender) }) : null,
      body,
      counts.size
        ? h(
            'ul',
            { class: 'reactions', 'aria-label': 'Reactions' },
            ...[...counts].map(([emoji, users]) =>
              h(
                'li',
                {
                  class: users.includes(this.client.me) ? 'chip own' : 'chip',
                  title: users.map((u) => this.nameOf(u)).join(', '),
                  'aria-label': `${emoji} from ${users.map((u) => this.nameOf(u)).join(', ')}`,
                },
                emoji,
                users.length > 1 ? h('span', { class: 'count', text: String(users.length) }) : null,
              ),
            ),
          )
        : null,
      h(
        'span',
        { class: 'meta' },
        s.edited ? h('span', { class: 'edited', text: 'edited' }) : null,
        m.expiresAt
          ? h(
              'span',
              {
                class: 'expires',
                role: 'img',
                title: `Disappears ${new Date(m.expiresAt).toLocaleString()}`,
                'aria-label': 'Disappearing message',
              },
              icon('timer'),
            )
          : null,
        time && !Number.isNaN(time.getTime())
          ? h('time', { datetime: m.sentAt, text: time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) })
          : null,
        m.mine && m.tick
          ? h('span', {
              class: `tick ${m.tick}`,
              'data-status': m.tick,
              'aria-label': TICK_LABEL[m.tick],
              title: TICK_LABEL[m.tick],
              text: TICK_GLYPH[m.tick],
            })
          : null,
      ),
      sent && !s.deleted
        ? h(
            'div',
            { class: 'actions', role: 'group', 'aria-label': 'Message actions' },
            act('reply', 'Reply'),
            act('react', 'React'),
            m.mine && m.kind === 'text' && age < EDIT_WINDOW_MS ? act('edit', 'Edit') : null,
            m.mine && age < DELETE_WINDOW_MS ? act('delete', 'Delete') : null,
          )
        : null,
      this.reactingTo === m.msgId && sent && !s.deleted
        ? h(
            'div',
            { class: 'emoji-picker', role: 'group', 'aria-label': 'Choose a reaction' },
            ...REACTIONS.map((e) =>
              h('button', {
                type: 'button',
                'data-action': 'emoji',
                'data-emoji': e,
                'aria-label': `React with ${e}`,
                'aria-pressed': String(mine === e),
                text: e,
              }),
            ),
          )
        : null,
    );
  }

  /** The quoted message above a reply: who wrote it and the start of its text. */
  private quoteNode(q: NonNullable<Shown['replyTo']>, byId: Map<string, ChatMessage>): HTMLElement {
    const original = byId.get(q.msgId);
    const text =
      q.text ??
      (original?.deleted
        ? 'This message was deleted'
        : original?.media
          ? `${original.media.contentType.startsWith('image/') ? 'Photo' : 'File'}${original.text ? `: ${original.text}` : ''}`
          : 'An earlier message');
    return h(
      'blockquote',
      { class: 'quote', 'data-quotes': q.msgId },
      h('strong', { class: 'quote-sender', text: q.sender ? this.nameOf(q.sender) : '' }),
      h('span', { class: 'quote-text', text }),
    );
  }

  /** A message's control was chosen. */
  private async messageAction(action: string, msgId: string, emoji?: string): Promise<void> {
    const sessionId = this.client.openChat;
    const chat = sessionId ? this.client.chats.get(sessionId) : undefined;
    if (!sessionId || !chat) return;
    const s = this.client.thread(chat).find((x) => x.msgId === msgId);
    if (!s) return;
    try {
      switch (action) {
        case 'reply':
          this.setContext({ kind: 'reply', msgId });
          return;
        case 'react':
          this.reactingTo = this.reactingTo === msgId ? null : msgId;
          this.render();
          (this.log.querySelector(`li[data-msg="${CSS.escape(msgId)}"] .emoji-picker button`) as HTMLElement | null)?.focus();
          return;
        case 'emoji': {
          this.reactingTo = null;
          // The same emoji again removes this user's reaction.
          const current = s.reactions?.[this.client.me];
          await this.client.react(sessionId, msgId, current === emoji ? '' : emoji ?? '');
          return;
        }
        case 'edit':
          if (Date.now() - new Date(s.sentAt).getTime() >= EDIT_WINDOW_MS) {
            throw new Error('a message can be edited only in the 15 minutes after it was sent');
          }
          this.setContext({ kind: 'edit', msgId });
          this.input.value = s.text ?? '';
          return;
        case 'delete':
          if (!window.confirm('Delete this message for everyone?')) return;
          await this.client.deleteMessage(sessionId, msgId);
          return;
      }
    } catch (e) {
      this.client.lastError = `Could not ${action}: ${String((e as Error).message ?? e)}`;
      this.render();
    }
  }

  /** Blocks the open direct chat's peer (after a confirmation) or unblocks them. */
  private async toggleBlock(): Promise<void> {
    const chat = this.client.openChat ? this.client.chats.get(this.client.openChat) : undefined;
    const peer = chat && this.client.peerOf(chat);
    if (!chat || !peer) return;
    const block = !this.client.blocked.has(peer);
    const name = displayName(chat);
    if (
      block &&
      !window.confirm(
        `Block ${name}? Their messages in this chat will not reach you, and they will not see when you are online or your profile photo and about. They are not told.`,
      )
    ) {
      return;
    }
    this.blockButton.disabled = true;
    try {
      await this.client.setBlocked(peer, block);
      this.chatNote.textContent = block ? `Blocked ${name}.` : `Unblocked ${name}.`;
    } catch (e) {
      this.chatNote.textContent = `Could not ${block ? 'block' : 'unblock'}: ${String((e as Error).message ?? e)}`;
    } finally {
      this.blockButton.disabled = false;
      this.render();
    }
  }

  /** Reports the open direct chat's peer, after a confirmation that says what is sent: their last
   * messages here, as this page shows them. Reporting blocks them too. */
  private async report(): Promise<void> {
    const chat = this.client.openChat ? this.client.chats.get(this.client.openChat) : undefined;
    const peer = chat && this.client.peerOf(chat);
    if (!chat || !peer) return;
    const name = displayName(chat);
    const messages = this.client.reportable(chat, peer);
    const attached =
      messages.length === 0
        ? 'No messages are attached.'
        : `The last ${messages.length === 1 ? 'message' : `${messages.length} messages`} from ${name} in this chat, as shown here, ${messages.length === 1 ? 'is' : 'are'} sent with the report.`;
    if (!window.confirm(`Report ${name} to Courier’s moderators? ${attached} ${name} is also blocked, and is not told.`)) {
      return;
    }
    this.reportButton.disabled = true;
    try {
      await this.client.reportUser(peer, messages);
      this.chatNote.textContent = 'Reported and blocked.';
    } catch (e) {
      this.chatNote.textContent = `Could not report: ${String((e as Error).message ?? e)}`;
    } finally {
      this.reportButton.disabled = false;
      this.render();
    }
  }

  /** Shows (or clears) what the composer replies to or edits. */
  private setContext(ctx: { kind: 'reply' | 'edit'; msgId: string } | null): void {
    if (this.context?.kind === 'edit' && ctx?.kind !== 'edit') this.input.value = '';
    this.context = ctx;
    const chat = this.client.openChat ? this.client.chats.get(this.client.openChat) : undefined;
    const s = ctx && chat ? this.client.thread(chat).find((x) => x.msgId === ctx.msgId) : undefined;
    if (!ctx || !s) {
      this.contextBar.hidden = true;
      this.contextBar.replaceChildren();
      return;
    }
    const cancel = h('button', { type: 'button', class: 'cancel', 'aria-label': ctx.kind === 'reply' ? 'Cancel reply' : 'Cancel edit', text: '✕' });
    cancel.onclick = () => {
      this.setContext(null);
      this.input.focus();
    };
    const m = chat?.messages.find((x) => x.msgId === ctx.msgId);
    const quoted = s.text ?? (m?.media ? (m.media.contentType.startsWith('image/') ? 'Photo' : 'File') : '');
    this.contextBar.replaceChildren(
      h(
        'blockquote',
        { class: 'quote' },
        h('strong', { class: 'quote-sender', text: ctx.kind === 'reply' ? `Replying to ${this.nameOf(s.sender)}` : 'Editing your message' }),
        h('span', { class: 'quote-text', text: quoted }),
      ),
      cancel,
    );
    this.contextBar.hidden = false;
    this.input.focus();
  }

  private mediaNode(m: ChatMessage): HTMLElement {
    const media = m.media!;
    const label = `${media.fileName ?? 'file'} (${formatSize(media.size)})`;
    let url = this.objectUrls.get(m.msgId);
    const own = m.clientMsgId ? this.client.sentFiles.get(m.clientMsgId) : undefined;
    if (!url && own) {
      url = URL.createObjectURL(own);
      this.objectUrls.set(m.msgId, url);
    }
    if (url && media.contentType.startsWith('image/')) {
      return h('img', { class: 'media', src: url, alt: media.caption || media.fileName || 'image' });
    }
    if (url) return h('a', { href: url, download: media.fileName ?? 'file', text: `Save ${label}` });
    const failed = this.fetchErrors.get(m.msgId);
    const busy = this.fetching.has(m.msgId);
    const b = h(
      'button',
      { type: 'button', class: 'download', disabled: busy },
      icon('clip'),
      busy ? `Downloading ${label}…` : failed ? `Could not open ${label}: ${failed}. Try again` : `Open ${label}`,
    );
    b.onclick = () => this.fetchMedia(m);
    // Images from others open by themselves (like the phone shows them), once.
    if (media.contentType.startsWith('image/') && !m.mine && !busy && !failed) {
      queueMicrotask(() => this.fetchMedia(m));
    }
    return b;
  }

  private readonly fetching = new Set<string>();
  private readonly fetchErrors = new Map<string, string>();

  private async fetchMedia(m: ChatMessage): Promise<void> {
    if (this.fetching.has(m.msgId) || this.objectUrls.has(m.msgId) || !m.media) return;
    this.fetching.add(m.msgId);
    this.fetchErrors.delete(m.msgId);
    this.render();
    try {
      const blob = await this.client.fetchFile(m.media);
      this.objectUrls.set(m.msgId, URL.createObjectURL(blob));
    } catch (e) {
      this.fetchErrors.set(m.msgId, String((e as Error).message ?? e));
    } finally {
      this.fetching.delete(m.msgId);
      this.render();
    }
  }

  private async send(): Promise<void> {
    const text = this.input.value.trim();
    const sessionId = this.client.openChat;
    if (!text || !sessionId) return;
    const ctx = this.context;
    this.context = null;
    this.setContext(null);
    this.input.value = '';
    if (ctx?.kind === 'reply') await this.client.sendReply(sessionId, ctx.msgId, text);
    else if (ctx?.kind === 'edit') await this.client.edit(sessionId, ctx.msgId, text);
    else await this.client.sendText(sessionId, text);
  }

  private async sendFile(): Promise<void> {
    const f = this.file.files?.[0];
    const sessionId = this.client.openChat;
    if (!f || !sessionId) return;
    const caption = this.input.value.trim();
    this.input.value = '';
    this.client.setTyping(sessionId, false);
    this.progress.hidden = false;
    this.progress.value = 0;
    try {
      await this.client.sendFile(sessionId, f, caption, (sent, total) => {
        this.progress.value = total ? Math.round((sent / total) * 100) : 0;
        this.progress.setAttribute('aria-valuetext', `${formatSize(sent)} of ${formatSize(total)} uploaded`);
      });
    } catch (e) {
      this.client.lastError = `The file was not sent: ${String((e as Error).message ?? e)}`;
      this.render();
    } finally {
      this.progress.hidden = true;
      this.file.value = '';
    }
  }

  // ---- panels -----------------------------------------------------------------------------------

  private showPanel(title: string, ...content: Node[]): void {
    const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '✕' });
    close.onclick = () => {
      this.panel.hidden = true;
      this.root.dataset.view = this.client.openChat ? 'conversation' : 'list';
    };
    this.panel.replaceChildren(h('header', {}, h('h2', { text: title }), close), ...content);
    this.panel.onkeydown = (e) => {
      if (e.key === 'Escape') close.click();
    };
    this.panel.hidden = false;
    this.root.dataset.view = 'panel';
    (this.panel.querySelector('input, select, textarea, button:not(.close)') as HTMLElement | null)?.focus();
  }

  private form(
    id: string,
    fields: HTMLElement[],
    submit: string,
    onSubmit: (data: FormData, status: HTMLElement) => Promise<void>,
  ): HTMLFormElement {
    const status = h('p', { role: 'status', class: 'form-status' });
    const f = h('form', { id }, ...fields, h('button', { type: 'submit', text: submit }), status);
    f.onsubmit = async (e) => {
      e.preventDefault();
      status.textContent = '…';
      try {
        await onSubmit(new FormData(f), status);
      } catch (err) {
        status.textContent = `Error: ${String((err as Error).message ?? err)}`;
      }
    };
    return f;
  }

  private newChat(): void {
    this.showPanel(
      'New chat',
      this.form('new-chat-form', [field('Phone number (E.164, e.g. +14155550100)', 'phone', 'tel')], 'Start chat', async (d) => {
        const id = await this.client.startChat(String(d.get('phone')).trim());
        this.open(id);
      }),
    );
  }

  private newGroup(): void {
    this.showPanel(
      'New group',
      this.form(
        'new-group-form',
        [field('Group name', 'name', 'text'), field('Members: phone numbers, separated by commas', 'phones', 'text')],
        'Create group',
        async (d) => {
          const phones = String(d.get('phones'))
            .split(',')
            .map((p) => p.trim())
            .filter(Boolean);
          const id = await this.client.createGroup(String(d.get('name')).trim(), phones);
          this.open(id);
        },
      ),
    );
  }

  private async statusPanel(): Promise<void> {
    const list = h('ul', { class: 'statuses', 'aria-label': 'Status updates' });
    const refresh = async () => {
      list.replaceChildren(h('li', { text: 'Loading…' }));
      const items = await this.client.statuses();
      list.replaceChildren(
        ...(items.length
          ? items.map((s) =>
              h(
                'li',
                {},
                h('strong', { text: s.userId === this.client.me ? 'You' : this.client.names.get(s.userId) ?? s.userId }),
                ' ',
                h('span', { class: 'status-text', text: s.text }),
                ' ',
                h('time', { datetime: s.postedAt, text: new Date(s.postedAt).toLocaleString() }),
              ),
            )
          : [h('li', { text: 'No status updates in the last 24 hours.' })]),
      );
    };
    this.showPanel(
      'Status',
      this.form('status-form', [field('Your status (visible 24 hours)', 'text', 'text')], 'Post status', async (d, st) => {
        await this.client.postStatus(String(d.get('text')).trim());
        st.textContent = 'Posted.';
        await refresh();
      }),
      list,
    );
    await refresh().catch((e) => list.replaceChildren(h('li', { text: `Error: ${String(e.message ?? e)}` })));
  }

  private async groupPanel(): Promise<void> {
    const groupId = this.client.openChat;
    if (!groupId) return;
    let g;
    try {
      g = await this.client.group(groupId);
    } catch (e) {
      this.showPanel('Group info', h('p', { role: 'alert', text: `Error: ${String((e as Error).message ?? e)}` }));
      return;
    }
    const names = await Promise.all(g.members.map((m) => this.client.nameOf(m.userId)));
    const amAdmin = g.members.some((m) => m.userId === this.client.me && m.role === 'admin');
    const leave = h('button', { type: 'button', id: 'leave-group', text: 'Leave group' });
    const st = h('p', { role: 'status' });
    leave.onclick = async () => {
      leave.disabled = true;
      try {
        await this.client.leaveGroup(groupId);
        this.panel.hidden = true;
        this.open(null);
      } catch (e) {
        leave.disabled = false;
        st.textContent = `Error: ${String((e as Error).message ?? e)}`;
      }
    };
    this.showPanel(
      'Group info',
      h('p', {}, h('strong', { text: g.name }), g.description ? ` — ${g.description}` : ''),
      h(
        'ul',
        { class: 'members', 'aria-label': 'Members' },
        ...g.members.map((m, i) =>
          h('li', {}, m.userId === this.client.me ? 'You' : names[i], m.role === 'admin' ? ' (admin)' : ''),
        ),
      ),
      amAdmin
        ? this.form('add-member-form', [field('Add a member: phone number', 'phone', 'tel')], 'Add', async (d, status) => {
            await this.client.addToGroup(groupId, String(d.get('phone')).trim());
            status.textContent = 'Added.';
            await this.groupPanel();
          })
        : h('p', { text: 'Only admins add members.' }),
      leave,
      st,
    );
  }

  private unlinkButton(): HTMLElement {
    const b = h('button', { type: 'button', id: 'unlink', class: 'danger', text: 'Unlink this browser' });
    const st = h('p', { role: 'status' });
    b.onclick = async () => {
      if (!window.confirm('Unlink this browser? Its keys and chats are deleted from it; your phone keeps everything.')) return;
      b.disabled = true;
      try {
        await this.client.unlink();
        location.reload();
      } catch (e) {
        b.disabled = false;
        st.textContent = `Error: ${String((e as Error).message ?? e)}`;
      }
    };
    return h('div', {}, b, st);
  }

  private async safetyPanel(): Promise<void> {
    const chat = this.client.openChat ? this.client.chats.get(this.client.openChat) : undefined;
    const peer = chat && this.client.peerOf(chat);
    if (!chat || !peer) return;
    this.showPanel('Verify', h('p', { role: 'status', text: 'Loading…' }));
    let s;
    try {
      s = await this.client.safety(peer);
    } catch (e) {
      this.showPanel('Verify', h('p', { role: 'alert', text: `Error: ${String((e as Error).message ?? e)}` }));
      return;
    }
    const groups = s.safetyNumber.split(' ');
    const rows = [0, 4, 8].map((i) => groups.slice(i, i + 4).join(' '));
    const devices = (title: string, list: [string, string, boolean?][]) =>
      h(
        'div',
        {},
        h('h3', { text: title }),
        h('ul', { class: 'fingerprints' }, ...list.map(([d, fp, primary]) => h('li', {}, h('span', { text: `${d}${primary ? ' (primary)' : ''}` }), h('code', { text: fp })))),
      );
    const content: Node[] = [
      h('p', { text: `Compare this number with ${displayName(chat)}’s, in person or over a call. If they match, your chat is end-to-end encrypted with the devices listed.` }),
      h('pre', { id: 'safety-number', class: 'safety-number', 'aria-label': 'Safety number', text: rows.join('\n') }),
    ];
    if (!s.trusted) {
      const accept = h('button', { type: 'button', id: 'accept-identity', text: 'Trust their new keys' });
      const st = h('p', { role: 'status' });
      accept.onclick = async () => {
        accept.disabled = true;
        try {
          const n = await this.client.acceptIdentity(peer);
          st.textContent = `Trusted the current keys of ${n} device(s).`;
        } catch (e) {
          accept.disabled = false;
          st.textContent = `Error: ${String((e as Error).message ?? e)}`;
        }
      };
      content.push(
        h('p', { role: 'alert', class: 'warning', text: 'Their keys changed since you last chatted (a new phone, or someone else). Nothing is sent to them and their messages are not shown until you trust the new keys.' }),
        accept,
        st,
      );
    }
    content.push(devices('Their devices', s.theirs), devices('Your devices', s.mine));
    this.showPanel('Verify', ...content);
  }

  private async settingsPanel(): Promise<void> {
    let s: Settings;
    try {
      s = await this.client.getSettings();
    } catch (e) {
      this.showPanel('Settings', h('p', { role: 'alert', text: `Error: ${String((e as Error).message ?? e)}` }));
      return;
    }
    const audience = (label: string, name: string, value: string, options = ['everyone', 'contacts', 'nobody']) =>
      h(
        'label',
        {},
        `${label} `,
        h('select', { name }, ...options.map((o) => h('option', { value: o, selected: o === value, text: o }))),
      );
    const rr = h('input', { type: 'checkbox', name: 'readReceipts', checked: s.privacy.readReceipts });
    this.showPanel(
      'Profile and privacy',
      this.form(
        'settings-form',
        [
          h('fieldset', {}, h('legend', { text: 'Profile' }), field('Name', 'name', 'text', s.display.name ?? '', false), field('About', 'about', 'text', s.display.about ?? '', false)),
          h(
            'fieldset',
            {},
            h('legend', { text: 'Privacy: who can see' }),
            audience('Last seen', 'lastSeen', s.privacy.lastSeen),
            audience('Profile photo', 'profilePhoto', s.privacy.profilePhoto),
            audience('About', 'aboutAudience', s.privacy.about),
            audience('Status', 'status', s.privacy.status),
            audience('Who can add me to groups', 'groupsAdd', s.privacy.groupsAdd, ['everyone', 'contacts']),
            h('label', {}, rr, ' Send read receipts'),
          ),
        ],
        'Save',
        async (d, st) => {
          const saved = await this.client.updateSettings({
            display: { name: String(d.get('name')), about: String(d.get('about')) },
            privacy: {
              lastSeen: String(d.get('lastSeen')),
              profilePhoto: String(d.get('profilePhoto')),
              about: String(d.get('aboutAudience')),
              status: String(d.get('status')),
              groupsAdd: String(d.get('groupsAdd')),
              readReceipts: rr.checked,
            },
          });
          st.textContent = `Saved${saved.display.name ? ` as ${saved.display.name}` : ''}.`;
        },
      ),
      this.pinSection(s.registrationPin === true),
      this.blockedSection(),
      h('p', { class: 'whoami', text: `Signed in as ${this.client.me}, device ${this.client.creds.deviceId}` }),
      this.unlinkButton(),
    );
  }

  /** Two-step verification: whether a PIN is set; check it (the reminder), change or remove it
   * with the current one. This browser is a linked device: it never sets the first PIN. */
  private pinSection(enabled: boolean): HTMLElement {
    const section = h('section', { id: 'pin-section', 'aria-labelledby': 'pin-title' });
    // PINs are not left in the page once a request is answered, right or wrong.
    const run = <T>(f: () => Promise<T>): Promise<T> =>
      this.pinCall(f).finally(() => section.querySelectorAll('input').forEach((i) => (i.value = '')));
    const render = (on: boolean) => {
      const state = h('p', {
        id: 'pin-state',
        'data-enabled': String(on),
        text: on
          ? 'On: moving your number to a new phone needs your 6-digit PIN as well as the SMS code.'
          : 'Off. Only your phone (the primary device) can turn it on (with the CLI: courier pin set).',
      });
      const forms: HTMLElement[] = on
        ? [
            this.form('pin-check-form', [pinField('Your PIN', 'checkPin')], 'Check PIN', async (d, st) => {
              const correct = await run(() => this.client.checkPin(String(d.get('checkPin'))));
              st.textContent = correct ? 'Correct: that is your PIN.' : 'Wrong: that is not your PIN.';
              st.dataset.result = correct ? 'correct' : 'wrong';
            }),
            this.form(
              'pin-change-form',
              [pinField('Current PIN', 'changeCurrent'), pinField('New PIN', 'changeNew')],
              'Change PIN',
              async (d, st) => {
                await run(() => this.client.changePin(String(d.get('changeCurrent')), String(d.get('changeNew'))));
                st.textContent = 'PIN changed: moving your number now needs the new PIN.';
              },
            ),
            this.form('pin-remove-form', [pinField('Current PIN', 'removeCurrent')], 'Remove PIN', async (d) => {
              await run(() => this.client.removePin(String(d.get('removeCurrent'))));
              render(false);
              section.querySelector('#pin-state')!.textContent = 'Off: two-step verification was removed.';
            }),
          ]
        : [];
      section.replaceChildren(h('h3', { id: 'pin-title', text: 'Two-step verification' }), state, ...forms);
    };
    render(enabled);
    return section;
  }

  /** Blocked contacts (`listBlocked`), by the names the page shows people by, each with Unblock. */
  private blockedSection(): HTMLElement {
    const list = h('ul', { id: 'blocked-list', class: 'blocked', 'aria-labelledby': 'blocked-title' });
    const st = h('p', { role: 'status' });
    const refresh = async () => {
      const ids = await this.client.refreshBlocked();
      const names = await Promise.all(ids.map((u) => this.client.nameOf(u)));
      if (!ids.length) {
        list.replaceChildren(h('li', { class: 'none', text: 'Nobody is blocked.' }));
        return;
      }
      list.replaceChildren(
        ...ids.map((u, i) => {
          const name = personName(names[i]);
          const b = h('button', { type: 'button', 'aria-label': `Unblock ${name}`, text: 'Unblock' });
          b.onclick = async () => {
            b.disabled = true;
            try {
              await this.client.setBlocked(u, false);
              st.textContent = `Unblocked ${name}.`;
              await refresh();
            } catch (e) {
              b.disabled = false;
              st.textContent = `Error: ${String((e as Error).message ?? e)}`;
            }
          };
          return h('li', { 'data-user': u }, h('span', { class: 'name', text: name }), ' ', b);
        }),
      );
    };
    list.append(h('li', { text: 'Loading…' }));
    refresh().catch((e) => list.replaceChildren(h('li', { text: `Error: ${String((e as Error).message ?? e)}` })));
    return h('section', { id: 'blocked-section', 'aria-labelledby': 'blocked-title' }, h('h3', { id: 'blocked-title', text: 'Blocked contacts' }), list, st);
  }

  /** Runs a PIN request; its errors become what the user should know. */
  private async pinCall<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      const code = (e as { code?: string }).code;
      const message = String((e as Error).message ?? e);
      const plain: Record<string, string> = {
        WRONG_PIN: 'That is not your current PIN; nothing was changed.',
        LIMIT_EXCEEDED: `Too many tries: ${message.replace(/^LIMIT_EXCEEDED: /, '')}`,
        FORBIDDEN: 'This account has no PIN; only your phone can turn two-step verification on.',
        NOT_FOUND: 'Two-step verification is off: this account has no PIN.',
        PIN_REQUIRED: 'Enter the current PIN.',
        BAD_REQUEST: 'A PIN is 6 digits.',
      };
      throw new Error((code && plain[code]) ?? message);
    }
  }
}

/** A 6-digit PIN input: hidden as typed, digits only, never saved by the browser. */
function pinField(label: string, name: string): HTMLElement {
  const id = `f-${name}`;
  return h(
    'p',
    {},
    h('label', { for: id, text: label }),
    h('input', {
      id,
      name,
      type: 'password',
      inputmode: 'numeric',
      pattern: '[0-9]{6}',
      maxlength: '6',
      autocomplete: 'off',
      title: '6 digits',
      required: true,
    }),
  );
}

function field(label: string, name: string, type: string, value = '', required = true): HTMLElement {
  const id = `f-${name}`;
  return h('p', {}, h('label', { for: id, text: label }), h('input', { id, name, type, value, required }));
}

function preview(m: ChatMessage, s: Shown): string {
  if (s.deleted) return 'This message was deleted';
  if (m.problem) return m.problem;
  if (m.media) return `${m.media.contentType.startsWith('image/') ? 'Photo' : 'File'}: ${m.media.fileName ?? 'file'}${m.text ? `, ${m.text}` : ''}`;
  return s.text ?? '';
}

/** When someone was last seen: the time today, else the day and time. */
function lastSeenText(at: string): string {
  const t = new Date(at);
  if (Number.isNaN(t.getTime())) return '';
  const time = t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (t.toDateString() === new Date().toDateString()) return `today at ${time}`;
  return `${t.toLocaleDateString([], { day: 'numeric', month: 'short' })} at ${time}`;
}

function lastAt(c: Chat): string {
  return c.messages.length ? c.messages[c.messages.length - 1].sentAt : '';
}

function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A chat's title: the group's name, the peer's profile name, or a short form of its id. */
function displayName(c: Chat): string {
  if (c.name && !/^u_[0-9a-f]{20,}$/.test(c.name)) return c.name;
  const id = c.name || c.sessionId;
  return id.length > 14 ? `${id.slice(0, 10)}…` : id;
}

/** A person as the page shows them (as `displayName` a direct chat): their profile name, else a
 * short form of the id `Client.nameOf` fell back to. */
function personName(name: string): string {
  if (!/^u_[0-9a-f]{20,}$/.test(name)) return name;
  return name.length > 14 ? `${name.slice(0, 10)}…` : name;
}

const ICONS: Record<string, string> = {
  // A stopwatch (⏱, which not every system's fonts draw): disappearing messages.
  timer: 'M12 21a8 8 0 1 0 0-16 8 8 0 0 0 0 16zM12 9v4l2.5 2.5M10 2h4M12 2v3',
  clip: 'M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5',
  group:
    'M9 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zm7 0a2.5 2.5 0 1 0 0-5M3 19c0-3 2.7-5 6-5s6 2 6 5M16 14c2.6.2 5 1.9 5 5',
};

/** A small line icon (decorative: its meaning is in the text beside it). */
function icon(name: keyof typeof ICONS): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon icon-${name}`);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}
