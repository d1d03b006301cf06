// pgwatchdog's live dashboard: one EventSource on /v1/events (the peer pushes a snapshot
// when something changes, at most once a second), no polling. Every value is put in the page
// with textContent, never as HTML. Buttons call the admin API with the token typed in the
// page (kept in sessionStorage: this tab only).
'use strict';

const LAG_POINTS = 120; // ~2 minutes of one-second samples per backend
const lagHistory = new Map(); // backend id -> number[]
let last = null;

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const badge = (text, cls) => el('span', { class: `badge s-${cls || text}`, text });

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function ago(iso) {
  if (!iso) return '–';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : new Date(iso).toLocaleString();
}

function sparkline(points) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${LAG_POINTS} 24`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const max = Math.max(1, ...points);
  const line = document.createElementNS(ns, 'polyline');
  const start = LAG_POINTS - points.length;
  line.setAttribute('points', points.map((p, i) => `${start + i},${(23 - (p / max) * 22).toFixed(1)}`).join(' '));
  svg.append(line);
  const title = document.createElementNS(ns, 'title');
  title.textContent = `max ${bytes(max)} over the last ${points.length} samples`;
  svg.append(title);
  return svg;
}

function recordLag(backends) {
  for (const b of backends) {
    const h = lagHistory.get(b.id) || [];
    h.push(b.lagBytes ?? 0);
    if (h.length > LAG_POINTS) h.shift();
    lagHistory.set(b.id, h);
  }
}

function renderHeader(s) {
  $('peer-name').textContent = `· ${s.peer.name} (${s.peer.state})`;
  $('coordinator').textContent = s.coordinator ?? 'none';
  $('vip').textContent = s.vip.address ? `${s.vip.address} on ${s.vip.holder ?? 'nobody'}` : 'not configured';
  $('quorum').textContent = `${s.quorum.alive}/${s.quorum.members} ${s.quorum.present ? 'present' : 'ABSENT'}`;
  $('term').textContent = String(s.raft.term);
  $('commit').textContent = String(s.raft.commitIndex);
  $('clients').textContent = `${s.clients.total} (${s.clients.active} active)`;
  document.title = `pgwatchdog · ${s.peer.name}`;
}

function renderPeers(s) {
  const body = $('peers').tBodies[0];
  body.replaceChildren(
    ...s.peers.map((p) =>
      el(
        'tr',
        { 'data-peer': p.name, class: p.self ? 'self' : '' },
        el('td', { text: p.self ? `${p.name} (this peer)` : p.name }),
        el('td', { class: 'state' }, badge(p.state)),
        el('td', { class: 'coordinator', text: p.coordinator ? '★ coordinator' : '' }),
        el('td', { text: p.vipHolder ? `holds ${s.vip.address}` : '' }),
        el('td', { class: 'num', text: String(p.priority) }),
        el('td', { text: p.self ? 'now' : ago(p.lastSeen) }),
        el('td', {}, p.coordinator || s.peers.length < 2 ? null : el('button', { 'data-action': 'transfer', onclick: () => transfer(p.name), text: 'make coordinator' })),
      ),
    ),
  );
}

function renderBackends(s) {
  const body = $('backends').tBodies[0];
  body.replaceChildren(
    ...s.backends.map((b) => {
      const buttons = [];
      if (b.status !== 'up') buttons.push(el('button', { 'data-action': 'attach', onclick: () => act('attach', b.id), text: 'attach' }));
      if (b.status === 'up') buttons.push(el('button', { 'data-action': 'detach', onclick: () => act('detach', b.id), text: 'detach' }));
      if (b.status === 'up' && b.role === 'standby') {
        buttons.push(el('button', { 'data-action': 'promote', onclick: () => act('promote', b.id), text: 'promote' }));
        buttons.push(el('button', { 'data-action': 'switchover', onclick: () => act('promote', b.id, true), text: 'switchover' }));
      }
      return el(
        'tr',
        { 'data-backend': String(b.id) },
        el('td', { class: 'num', text: String(b.id) }),
        el('td', { text: b.name }),
        el('td', { text: `${b.host}:${b.port}` }),
        el('td', { class: 'status' }, badge(b.status)),
        el('td', { class: `role role-${b.role}`, text: b.role }),
        el('td', { text: b.lsn ?? '–' }),
        el('td', { class: 'num lag', text: b.role === 'primary' ? '–' : `${bytes(b.lagBytes)}${b.lagMs !== null && b.lagMs !== undefined ? ` · ${(b.lagMs / 1000).toFixed(1)} s` : ''}` }),
        el('td', {}, b.role === 'primary' ? null : sparkline(lagHistory.get(b.id) || [])),
        el('td', { class: 'num', text: `${b.weight} (${(b.lbWeight * 100).toFixed(0)}%)` }),
        el('td', { class: 'num', text: String(b.sessions) }),
        el('td', { class: 'num', text: String(b.readsRouted) }),
        el('td', {}, ...buttons),
      );
    }),
  );
}

// A step of a failover: ok (✓), failed (✗) or begun with no end on record (…); the peer that
// ran it when another than the failover's runner (a resumed record).
function stepText(st, ranBy) {
  const mark = st.ok === null ? '…' : st.ok ? '✓' : '✗';
  const by = st.peer && st.peer !== ranBy ? ` by ${st.peer} (term ${st.term})` : '';
  const runs = st.runs > 1 ? `, ${st.runs} runs` : '';
  return `${mark} ${st.name}${st.backend !== null ? ` (backend ${st.backend})` : ''}${st.ms !== null ? ` ${st.ms} ms` : ''}${by}${runs}: ${st.detail}`;
}

function renderTimeline(failovers, active) {
  const list = $('timeline');
  const items = [];
  if (active) items.push(el('li', { class: 'active' }, el('span', { class: 'when', text: 'now' }), `running: ${active.kind} ${active.ids.join(',')} — ${active.reason}`));
  for (const f of failovers) {
    items.push(
      el(
        'li',
        { class: f.ok ? 'ok' : 'failed', 'data-seq': String(f.seq) },
        el('span', { class: 'when', text: new Date(f.finishedAt).toLocaleTimeString() }),
        badge(f.ok ? 'ok' : 'failed'),
        ` ${f.kind}${f.switchover ? ' (switchover)' : ''} of ${f.nodes.join(',')} by ${f.ranBy}${f.resumes > 0 ? ` (resumed ${f.resumes}×)` : ''}, term ${f.term}, ${f.durationMs} ms — ${f.result}`,
        el('details', {}, el('summary', { text: `${f.steps.length} step${f.steps.length === 1 ? '' : 's'}` }), el('ol', { class: 'steps' }, ...f.steps.map((st) => el('li', { text: stepText(st, f.ranBy) })))),
      ),
    );
  }
  if (items.length === 0) items.push(el('li', { class: 'empty', text: 'no failover yet' }));
  list.replaceChildren(...items);
}

function render(data) {
  last = data;
  const s = data.status;
  recordLag(s.backends);
  renderHeader(s);
  renderPeers(s);
  renderBackends(s);
  renderTimeline(data.failovers, s.failover.active);
}

function log(line) {
  const pre = $('action-log');
  pre.textContent = `${new Date().toLocaleTimeString()} ${line}\n${pre.textContent}`.slice(0, 20000);
}

async function call(path, what) {
  const token = $('token').value.trim();
  if (!token) {
    log(`${what}: type the admin token first`);
    $('token').focus();
    return;
  }
  const buttons = document.querySelectorAll('button');
  buttons.forEach((b) => (b.disabled = true));
  log(`${what}: sent`);
  try {
    const r = await fetch(path, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    const body = await r.json().catch(() => ({}));
    if (r.ok) log(`${what}: done — ${body.failover ? body.failover.result : body.summary || 'ok'}`);
    else log(`${what}: refused (${r.status}) — ${body.error || r.statusText}`);
  } catch (err) {
    log(`${what}: ${err.message}`);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function act(action, id, switchover) {
  if (action !== 'attach' && !confirm(`${switchover ? 'switchover to' : action} backend ${id}?`)) return;
  return call(`/v1/backends/${id}/${action}${switchover ? '?switchover=true' : ''}`, `${switchover ? 'switchover to' : action} backend ${id}`);
}

function transfer(peer) {
  if (!confirm(`make ${peer} the coordinator?`)) return;
  return call(`/v1/coordinator/transfer?to=${encodeURIComponent(peer)}`, `transfer to ${peer}`);
}

function connect() {
  const es = new EventSource('/v1/events');
  const conn = $('conn');
  es.addEventListener('open', () => {
    conn.className = 'conn up';
    conn.textContent = 'live';
  });
  es.addEventListener('status', (e) => render(JSON.parse(e.data)));
  es.addEventListener('error', () => {
    conn.className = 'conn down';
    conn.textContent = 'disconnected: retrying';
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const t = $('token');
  t.value = sessionStorage.getItem('pgwatchdog-token') || '';
  t.addEventListener('input', () => sessionStorage.setItem('pgwatchdog-token', t.value));
  $('token-form').addEventListener('submit', (e) => e.preventDefault());
  // "last seen" ages between snapshots.
  setInterval(() => last && renderPeers(last.status), 5000);
  connect();
});
