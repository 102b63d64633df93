// sockhub's chat page: the JSON chat protocol v1 over /ws (docs/web-protocol.md).
// Every text from the server goes in with textContent or text nodes, never as HTML.
'use strict';
(() => {
  const $ = id => document.getElementById(id);
  const fold = s => String(s).toLowerCase();
  const S = {
    ws: null, nick: '', me: '', registered: false, chosen: false, account: null,
    convs: new Map(), cur: null, wanted: new Map(), pending: new Map(), seq: 0,
    delay: 0, timer: 0, closing: '', limit: 4000,
  };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function status(text) { $('status').textContent = text; }
  function connected() {
    status(`Connected as ${S.me}${S.account ? ` (logged in as ${S.account})` : ''}`);
  }

  // --- the socket ---------------------------------------------------------
  function send(msg) {
    if (S.ws && S.ws.readyState === 1) S.ws.send(JSON.stringify(msg));
  }
  function request(msg, what) {
    msg.id = ++S.seq;
    S.pending.set(msg.id, what);
    send(msg);
  }

  function connect() {
    clearTimeout(S.timer);
    const url = new URL('ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url.href);
    S.ws = ws;
    ws.onopen = () => {
      status('Connected, signing in…');
      send({type: 'hello', version: 1, nick: S.nick});
    };
    ws.onmessage = ev => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg && typeof msg.type === 'string' && H[msg.type]) H[msg.type](msg);
    };
    ws.onclose = ev => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.registered = false;
      S.pending.clear();
      if (ev.reason || S.closing || !S.why) S.why = ev.reason || S.closing || 'connection lost';
      S.delay = Math.min(S.delay ? S.delay * 2 : 500, 15000);
      const wait = Math.round(S.delay * (0.8 + Math.random() * 0.4));
      status(`Disconnected: ${S.why}. Reconnecting in ${Math.ceil(wait / 1000)} s…`);
      S.closing = '';
      for (const c of S.convs.values()) if (c.room && c.joined) { c.joined = false; render(c); }
      S.timer = setTimeout(connect, wait);
    };
  }

  // --- conversations ------------------------------------------------------
  function conv(name, room) {
    const key = (room ? '' : '@') + fold(name);
    let c = S.convs.get(key);
    if (!c) {
      c = {key, name, room, joined: false, unread: 0, more: false, ids: new Set(),
        members: new Map(), topic: '', log: el('ol', 'log'), item: el('li'), btn: el('button')};
      c.log.hidden = true;
      c.btn.type = 'button';
      c.btn.onclick = () => show(c);
      c.item.append(c.btn);
      $('convs').append(c.item);
      $('logs').append(c.log);
      S.convs.set(key, c);
      if (S.cur) render(c); else show(c);
    }
    return c;
  }

  function render(c) {
    const b = c.btn;
    b.replaceChildren(el('span', 'name', c.name));
    if (!c.room) { c.item.className = 'pm'; b.append(el('span', 'sr', ' (private)')); }
    if (c.room && !c.joined) b.append(el('span', 'off', ' (not joined)'));
    if (c.unread) {
      const n = el('span', 'badge', String(c.unread));
      n.setAttribute('aria-label', `${c.unread} unread`);
      b.append(n);
    }
    if (c === S.cur) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
    if (c === S.cur) head();
  }
  function head() {
    const c = S.cur;
    $('title').textContent = c ? c.name : 'sockhub';
    $('topic').textContent = c ? (c.room ? c.topic : `private conversation with ${c.name}`) : '';
    c && c.log.setAttribute('aria-label', `Messages in ${c.name}`);
    $('older').hidden = !(c && c.room && c.more && c.joined);
    members();
  }

  function show(c) {
    if (S.cur) { S.cur.log.hidden = true; const p = S.cur; S.cur = c; render(p); } else S.cur = c;
    c.log.hidden = false;
    c.unread = 0;
    render(c);
    bottom(true);
  }

  function drop(c) {
    c.item.remove();
    c.log.remove();
    S.convs.delete(c.key);
    if (S.cur === c) {
      S.cur = null;
      const next = S.convs.values().next().value;
      if (next) show(next); else head();
    }
  }

  function members() {
    const c = S.cur, list = $('member-list');
    list.replaceChildren();
    $('members-title').textContent = c && c.room ? `Members (${c.members.size})` : 'Members';
    if (!c || !c.room) return;
    const ms = [...c.members.values()].sort((a, b) =>
      (b.op - a.op) || (b.voice - a.voice) || fold(a.nick).localeCompare(fold(b.nick)));
    for (const m of ms) {
      const b = el('button', m.away ? 'away' : '', (m.op ? '@' : m.voice ? '+' : '') + m.nick);
      b.type = 'button';
      b.title = m.away ? `away: ${m.away}` : `Private message to ${m.nick}`;
      b.onclick = () => { show(conv(m.nick, false)); $('input').focus(); };
      const li = el('li');
      li.append(b);
      list.append(li);
    }
  }

  // --- the message pane ---------------------------------------------------
  function near() { const p = $('pane'); return p.scrollHeight - p.scrollTop - p.clientHeight < 60; }
  function bottom(go) { const p = $('pane'); if (go) p.scrollTop = p.scrollHeight; }
  // Append to c, following the newest line only if the reader was already there.
  function add(c, f) { const s = c === S.cur && near(); const r = f(); bottom(s); return r; }

  function time(ts) {
    const t = el('time', 'ts');
    if (ts > 0) {
      const d = new Date(ts * 1000);
      t.dateTime = d.toISOString();
      t.title = d.toLocaleString();
      t.textContent = d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    }
    return t;
  }

  function line(cls, ts, nick, text, action) {
    const li = el('li', cls);
    li.append(time(ts), ' ');
    if (action) li.append(el('span', 'nick', `* ${nick}`), ' ', el('span', 'text', text));
    else if (nick) li.append(el('span', 'nick', `<${nick}>`), ' ', el('span', 'text', text));
    else li.append(el('span', 'text', text));
    return li;
  }

  // A stored message, placed by id: late history and live messages meet in order, once.
  function message(c, m) {
    if (typeof m.id !== 'number' || c.ids.has(m.id)) return false;
    c.ids.add(m.id);
    const li = line(m.notice ? 'msg notice' : 'msg', m.ts, m.nick, m.text, m.action);
    li.dataset.id = m.id;
    if (fold(m.nick) === fold(S.me)) li.classList.add('mine');
    let next = null;
    for (let n = c.log.lastElementChild; n; n = n.previousElementSibling) {
      if (!n.dataset.id) continue;
      if (+n.dataset.id < m.id) break;
      next = n;
    }
    c.log.insertBefore(li, next);
    return true;
  }

  // A kept private message in the shape message() places by id.
  function pm(m) {
    return {id: m.id, nick: m.from, text: m.text, action: m.action, notice: m.notice, ts: m.ts};
  }

  function notice(c, text, ts, cls) {
    add(c, () => c.log.append(line(cls === 'error' ? 'event error' : 'event', ts, '', text)));
  }

  function unread(c) {
    if (c !== S.cur) { c.unread++; render(c); }
  }

  function older() {
    const c = S.cur;
    if (!c || !c.room || !c.more || c.loading || !c.ids.size) return;
    const first = Math.min(...c.ids);
    c.loading = true;
    request({type: 'history', room: c.name, before: first, limit: 50}, {kind: 'before', c});
  }

  // --- what the server says -------------------------------------------------
  const H = {
    welcome(m) {
      S.registered = true;
      S.me = m.nick;
      S.delay = 0;
      S.why = '';
      if (typeof m.limits === 'object' && m.limits && m.limits.text > 0) {
        S.limit = m.limits.text;
        $('input').maxLength = S.limit;
      }
      S.account = typeof m.account === 'string' ? m.account : null;
      $('login').hidden = true;
      $('acct').hidden = true;
      $('chat').hidden = false;
      $('logout').hidden = !S.account;
      connected();
      // Rooms this person is in already (another connection of the account's:
      // multiclient): the server sends their state itself, so they are not joined.
      const here = (Array.isArray(m.rooms) ? m.rooms : []).filter(r => typeof r === 'string');
      if (!S.wanted.size && !S.convs.size) {
        if (!here.length) S.wanted.set('#lobby', {name: '#lobby', show: true});
        here.forEach((r, i) => S.wanted.set(fold(r), {name: r, show: i === here.length - 1}));
      }
      const present = new Set(here.map(fold));
      for (const w of S.wanted.values()) {
        const c = S.convs.get(fold(w.name));
        if (!present.has(fold(w.name))) join(w.name, w.password, w.show);
        else if (c && c.ids.size) gap(c);  // back after a drop: what was missed
      }
      send({type: 'rooms'});
      if (S.account) request({type: 'conversations'}, {kind: 'conversations'});
      if (!S.chosen) { S.chosen = true; $('input').focus(); }
    },
    message(m) {
      const c = conv(m.room, true);
      if (add(c, () => message(c, m)) && fold(m.nick) !== fold(S.me)) unread(c);
    },
    private(m) {
      const other = fold(m.from) === fold(S.me) ? m.to : m.from;
      const c = conv(other, false);
      if (typeof m.id === 'number') add(c, () => message(c, pm(m)));  // kept: placed by id
      else add(c, () => c.log.append(line(m.notice ? 'msg notice' : 'msg', m.ts, m.from, m.text, m.action)));
      if (fold(m.from) !== fold(S.me)) unread(c);
    },
    conversations(m) {
      for (const x of m.conversations || []) {
        if (typeof x.with !== 'string') continue;
        const c = conv(x.with, false);
        request({type: 'history', with: x.with, limit: 50}, {kind: 'pm', c});
      }
    },
    joined(m) {
      const c = conv(m.room, true);
      if (fold(m.nick) === fold(S.me)) {
        const w = S.wanted.get(fold(m.room));
        c.joined = c.joining = true;
        c.name = m.room;
        if (w && w.show) { w.show = false; show(c); }
        notice(c, `You joined ${m.room}`, m.ts, 'join');
        render(c);
      } else {
        notice(c, `${m.nick} joined`, m.ts, 'join');
      }
      c.members.set(fold(m.nick), c.members.get(fold(m.nick)) || {nick: m.nick, op: false, voice: false, away: null});
      if (c === S.cur) members();
    },
    parted(m) {
      const c = S.convs.get(fold(m.room));
      if (!c) return;
      if (fold(m.nick) === fold(S.me)) { S.wanted.delete(c.key); drop(c); return; }
      c.members.delete(fold(m.nick));
      notice(c, `${m.nick} left${m.reason ? ` (${m.reason})` : ''}`, m.ts, 'part');
      if (c === S.cur) members();
    },
    kicked(m) {
      const c = S.convs.get(fold(m.room));
      if (!c) return;
      const me = fold(m.nick) === fold(S.me);
      notice(c, `${me ? 'You were' : `${m.nick} was`} removed by ${m.by}${m.reason ? ` (${m.reason})` : ''}`, m.ts, 'part');
      c.members.delete(fold(m.nick));
      if (me) { S.wanted.delete(c.key); c.joined = false; render(c); }
      if (c === S.cur) head();
    },
    quit(m) {
      const k = fold(m.nick);
      for (const c of S.convs.values()) {
        if (c.room ? c.members.delete(k) : c.key === '@' + k) {
          notice(c, `${m.nick} quit${m.reason ? ` (${m.reason})` : ''}`, m.ts, 'part');
        }
      }
      members();
    },
    nick(m) {
      const o = fold(m.old), me = o === fold(S.me);
      if (me) { S.me = m.new; S.nick = m.new; connected(); }
      for (const c of [...S.convs.values()]) {
        const mem = c.members.get(o);
        if (c.room ? mem : c.key === '@' + o) {
          notice(c, me ? `You are now known as ${m.new}` : `${m.old} is now known as ${m.new}`, m.ts, 'nick');
        }
        if (mem) { c.members.delete(o); mem.nick = m.new; c.members.set(fold(m.new), mem); }
        if (!c.room && c.key === '@' + o) {
          S.convs.delete(c.key);
          c.key = '@' + fold(m.new);
          c.name = m.new;
          S.convs.set(c.key, c);
          render(c);
        }
      }
      head();
    },
    topic(m) {
      const c = conv(m.room, true);
      c.topic = m.topic;
      // The topic a join brings is news only the first time.
      if (c.joining) { if (m.topic && !c.told) notice(c, `Topic: ${m.topic}`, m.ts); } else if (m.by) {
        notice(c, `${m.by} set the topic: ${m.topic}`, m.ts);
      }
      c.told = true;
      if (c === S.cur) head();
    },
    history(m) {
      const what = S.pending.get(m.re) || {kind: 'join'};
      S.pending.delete(m.re);
      if (typeof m.with === 'string') {  // the account's private messages with someone
        const c = conv(m.with, false);
        for (const x of Array.isArray(m.messages) ? m.messages : []) add(c, () => message(c, pm(x)));
        return;
      }
      const c = conv(m.room, true), p = $('pane');
      const list = Array.isArray(m.messages) ? m.messages : [];
      const h = p.scrollHeight, s = c === S.cur && near(), had = c.ids.size;
      for (const x of list) message(c, x);
      if (what.kind === 'before') {
        c.loading = false;
        c.more = !!m.more;
        // Keep the line the reader was looking at where it was.
        if (c === S.cur) p.scrollTop += p.scrollHeight - h;
      } else {
        if (what.kind === 'join') c.joining = false;
        if (what.kind === 'join' && !had) c.more = !!m.more;
        // The gap may be longer than one page: ask again after the newest.
        if (what.kind === 'after' && m.more && list.length) gap(c);
        bottom(s);
      }
      if (c === S.cur) head();
    },
    rooms(m) {
      const dl = $('room-list');
      dl.replaceChildren();
      for (const r of m.rooms || []) {
        const o = el('option');
        o.value = r.name;
        o.label = `${r.name} (${r.members})${r.topic ? ` ${r.topic}` : ''}`;
        dl.append(o);
      }
    },
    members(m) {
      const c = conv(m.room, true);
      c.members = new Map((m.members || []).map(x => [fold(x.nick), x]));
      if (c === S.cur) members();
    },
    pong() {},
    notice(m) {
      const text = String(m.text || '');
      if (S.cur) notice(S.cur, text, Date.now() / 1000); else status(text);
    },
    error(m) {
      const what = S.pending.get(m.re);
      if (what) { S.pending.delete(m.re); if (what.c) what.c.loading = false; }
      if (m.code === 'already_in_room' && what && what.join) {
        const c = S.convs.get(fold(what.join));
        if (c) { c.joining = false; c.joined = true; show(c); }
        return;
      }
      const text = `${m.message || m.code}`;
      if (!S.registered && S.chosen && m.code === 'nick_in_use' && S.nick.length < 30) {
        S.nick = (S.nick || S.account || 'guest') + '_';
        return send({type: 'hello', version: 1, nick: S.nick});
      }
      if (!S.registered) {
        $('login-error').textContent = text;
        $('login').hidden = false;
        $('acct').hidden = false;
        $('chat').hidden = true;
        $('nick').focus();
        return;
      }
      if (['no_such_room', 'invalid_room', 'banned', 'invite_only', 'bad_password', 'full',
        'too_many_rooms'].includes(m.code) && what && what.join) {
        S.wanted.delete(fold(what.join));
      }
      const c = S.cur;
      if (c) notice(c, `Error: ${text}`, Date.now() / 1000, 'error'); else status(text);
    },
  };

  function join(name, password, showIt) {
    const k = fold(name), c = S.convs.get(k);
    if (c && c.joined) return show(c);
    S.wanted.set(k, {name, password, show: showIt});
    const msg = {type: 'join', room: name};
    if (password) msg.password = password;
    request(msg, {kind: 'join', join: name});
    if (c) { c.joining = true; if (c.ids.size) gap(c); }
  }

  // What was said while we were away: after the newest message we hold.
  function gap(c) {
    const last = Math.max(...c.ids);
    request({type: 'history', room: c.name, after: last, limit: 200}, {kind: 'after', c});
  }

  // --- what the user types ------------------------------------------------
  function say(text, action) {
    const c = S.cur;
    if (!c) return notice0('Join a room first: /join #room');
    if (c.room) send({type: 'say', room: c.name, text, action});
    else send({type: 'private', to: c.name, text, action});
  }
  function notice0(text) { if (S.cur) notice(S.cur, text, Date.now() / 1000, 'error'); else status(text); }

  function command(raw) {
    if (!raw.startsWith('/') || raw.startsWith('//')) return say(raw.startsWith('//') ? raw.slice(1) : raw, false);
    const [, cmd, rest = ''] = raw.match(/^\/(\S+)\s*([\s\S]*)$/) || [];
    const arg = rest.trim(), [first = '', ...others] = arg.split(/\s+/), tail = others.join(' ');
    switch (fold(cmd)) {
      case 'me': return arg ? say(arg, true) : undefined;
      case 'join': case 'j':
        if (!first) return notice0('Usage: /join #room [password]');
        return join(/^[#&]/.test(first) ? first : `#${first}`, tail, true);
      case 'part': case 'leave': {
        const c = /^[#&]/.test(first) ? S.convs.get(fold(first)) : S.cur;
        const reason = /^[#&]/.test(first) ? tail : arg;
        if (!c) return notice0('Not in that room');
        if (!c.room) return drop(c);
        S.wanted.delete(c.key);
        return c.joined ? send({type: 'part', room: c.name, reason}) : drop(c);
      }
      case 'nick':
        return first ? send({type: 'nick', nick: first}) : notice0('Usage: /nick NEWNICK');
      case 'msg': case 'query': {
        if (!first) return notice0('Usage: /msg NICK text');
        const c = conv(first, false);
        show(c);
        if (tail) send({type: 'private', to: first, text: tail});
        return;
      }
      case 'topic':
        return S.cur && S.cur.room ? send({type: 'topic', room: S.cur.name, topic: arg}) : notice0('Not in a room');
      default: return notice0(`Unknown command /${cmd} (try /me /join /part /nick /msg /topic)`);
    }
  }

  // --- accounts: the session is an HttpOnly cookie this script never sees ------
  function post(path, body) {
    return fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body), credentials: 'same-origin', cache: 'no-store'})
      .then(r => r.json().catch(() => ({})).then(b => ({ok: r.ok, b})));
  }
  function account(path) {
    const body = {account: $('account').value.trim(), password: $('password').value};
    $('acct-error').textContent = '';
    post(path, body).then(({ok, b}) => {
      if (!ok) { $('acct-error').textContent = b.error || 'refused'; return; }
      $('password').value = '';
      S.account = b.account;
      S.nick = '';
      if (!S.ws) connect();
    }, () => { $('acct-error').textContent = 'the server did not answer'; });
  }
  function session() {
    fetch('session', {credentials: 'same-origin', cache: 'no-store'}).then(r => r.json()).then(s => {
      $('do-register').hidden = s.accounts !== 'open';
      if (typeof s.account === 'string' && !S.ws) {  // logged in before this reload
        S.account = s.account;
        S.nick = '';
        connect();
      }
    }, () => {});
  }

  function start() {
    session();
    $('acct').onsubmit = ev => { ev.preventDefault(); account('login'); };
    $('do-register').onclick = () => account('register');
    $('logout').onclick = () => {
      S.closing = 'logged out';
      post('logout', {}).then(() => location.reload(), () => location.reload());
    };
    $('nick').value = localStorage.getItem('sockhub.nick') || '';
    $('login').onsubmit = ev => {
      ev.preventDefault();
      S.nick = $('nick').value.trim();
      $('login-error').textContent = '';
      try { localStorage.setItem('sockhub.nick', S.nick); } catch (e) { /* private mode */ }
      if (S.ws && S.ws.readyState === 1) send({type: 'hello', version: 1, nick: S.nick});
      else if (!S.ws) connect();
    };
    $('send').onsubmit = ev => {
      ev.preventDefault();
      const text = $('input').value;
      if (!text.trim()) return;
      if (!S.registered) return status('Not connected yet: the message was kept');
      $('input').value = '';
      command(text);
    };
    $('join').onsubmit = ev => {
      ev.preventDefault();
      const r = $('join-room').value.trim();
      if (!r) return;
      $('join-room').value = '';
      command(`/join ${r}`);
      $('input').focus();
    };
    $('older').onclick = older;
    $('pane').onscroll = () => { if ($('pane').scrollTop < 40) older(); };
    const panel = open => {
      document.body.classList.toggle('show-members', open);
      $('members-toggle').setAttribute('aria-expanded', String(open));
    };
    $('members-toggle').onclick = () => panel(!document.body.classList.contains('show-members'));
    // Alt+Up/Down: the previous or next conversation, from the keyboard.
    document.addEventListener('keydown', ev => {
      if (ev.key === 'Escape') panel(false);
      if (!ev.altKey || (ev.key !== 'ArrowUp' && ev.key !== 'ArrowDown') || !S.cur) return;
      const all = [...S.convs.values()], i = all.indexOf(S.cur);
      const next = all[(i + (ev.key === 'ArrowUp' ? all.length - 1 : 1)) % all.length];
      ev.preventDefault();
      show(next);
    });
    window.addEventListener('beforeunload', () => { S.closing = 'page closed'; });
  }
  start();
})();
