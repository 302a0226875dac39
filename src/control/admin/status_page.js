// The admin status page's script (embedded by `admin::status_page`; no external assets).
//
// It reads `GET /api/v1/status` every second and updates the page in place: one row per node,
// created once and updated afterwards, so a button never moves under the pointer. Rates
// (requests/s, failovers/s) are computed here from the counters' deltas between two polls and
// kept for the last WINDOW_S seconds. Every text from the server goes in with `textContent`.
'use strict';

const WINDOW_S = 300;
const MIN_SPAN_S = 30;
const POLL_MS = 1000;
const TOKEN_KEY = 'stickyroute-token';
const SVG_NS = 'http://www.w3.org/2000/svg';
const STATES = [['draining', 'drain'], ['disabled', 'disable'], ['active', 'activate'], ['standby', 'standby']];
const tokenRequired = document.body.dataset.tokenRequired === 'true';

const samples = new Map(); // node key -> [{t, requests, fin, fout}]
const drainFrom = new Map(); // node key -> live sessions when the drain was first seen
const rows = new Map(); // node key -> row elements
let layout = '';
let polls = 0;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

const keyOf = (pool, node) => pool + '\u0000' + node.route;

function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

// "cluster: prod — connected, 3 instances", "cluster: prod — disconnected", or '' when the
// report has no cluster section.
function clusterText(c) {
  if (!c) return '';
  const name = c.name ? c.name + ' — ' : '';
  if (!c.connected) return 'cluster: ' + name + 'disconnected';
  const all = (c.instances || []).length;
  const down = (c.instances || []).filter(i => !i.alive).length;
  return 'cluster: ' + name + 'connected, ' + plural(all, 'instance', 'instances') +
    (down ? ' (' + down + ' not answering)' : '');
}

// Per-second rates of `field` between consecutive samples: [[t, rate], ...].
function rates(list, field) {
  const out = [];
  for (let i = 1; i < list.length; i++) {
    const dt = (list[i].t - list[i - 1].t) / 1000;
    const dv = list[i][field] - list[i - 1][field];
    // A counter that went down was reset (a node's address changed on reload).
    if (dt > 0) out.push([list[i].t, dv >= 0 ? dv / dt : 0]);
  }
  return out;
}

function record(key, n, now) {
  let list = samples.get(key);
  if (!list) samples.set(key, list = []);
  list.push({t: now, requests: n.requests, fin: n.failovers_in, fout: n.failovers_out});
  while (list.length && list[0].t < now - WINDOW_S * 1000) list.shift();
  return list;
}

// Draws series (each [[t, v], ...]) into the chart's SVG, now at the right edge. The time axis
// spans what has been seen, at least MIN_SPAN_S and at most WINDOW_S seconds.
function draw(chart, series, now) {
  const w = 160, h = 36;
  const max = Math.max(1, ...series.flatMap(s => s.points.map(p => p[1])));
  const oldest = Math.min(now, ...series.flatMap(s => s.points.map(p => p[0])));
  const span = Math.min(WINDOW_S, Math.max(MIN_SPAN_S, (now - oldest) / 1000)) * 1000;
  chart.svg.replaceChildren(svgEl('rect', {x: 0, y: 0, width: w, height: h, class: 'frame'}));
  chart.svg.querySelector('rect').append(svgEl('title', {}));
  chart.svg.querySelector('title').textContent = 'last ' + Math.round(span / 1000) + ' s';
  for (const s of series) {
    const pts = s.points.map(([t, v]) => {
      const x = w - (now - t) / span * w;
      const y = h - 1 - v / max * (h - 4);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    if (pts.length) chart.svg.append(svgEl('polyline', {points: pts.join(' '), class: s.cls}));
  }
  chart.max.textContent = 'max ' + fmt(max) + ' · ' + Math.round(span / 1000) + ' s';
}

function fmt(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

function makeChart(label) {
  const svg = svgEl('svg', {width: 160, height: 36, viewBox: '0 0 160 36', role: 'img'});
  svg.setAttribute('aria-label', label);
  const now = el('span', {className: 'rate'});
  const max = el('small', {className: 'max'});
  return {svg, now, max, box: el('div', {className: 'chart'}, svg, el('div', {}, now, ' ', max))};
}

function makeRow(poolName, n) {
  const tr = el('tr');
  tr.dataset.pool = poolName;
  tr.dataset.route = n.route;
  const cell = (cls) => { const td = el('td', {className: cls}); tr.append(td); return td; };
  const r = {tr};
  r.route = cell('route');
  r.state = cell('state');
  r.health = cell('health');
  r.inflight = cell('num inflight');
  const sessions = cell('sessions');
  r.bar = el('div', {className: 'bar'});
  r.live = el('span', {className: 'live'});
  sessions.append(el('div', {className: 'track'}, r.bar), r.live);
  const drain = cell('drain');
  r.drainBar = el('div', {className: 'bar'});
  r.drainText = el('span', {className: 'drain-text'});
  r.drainTrack = el('div', {className: 'track'}, r.drainBar);
  drain.append(r.drainTrack, r.drainText);
  r.req = makeChart('requests per second of ' + n.route);
  cell('chart-cell').append(r.req.box);
  r.fo = makeChart('failovers per second of ' + n.route);
  cell('chart-cell').append(r.fo.box);
  r.error = cell('error');
  const actions = cell('actions');
  r.buttons = STATES.map(([state, label]) => {
    const b = el('button', {type: 'button', textContent: label});
    b.dataset.route = n.route;
    b.dataset.pool = poolName;
    b.dataset.state = state;
    b.addEventListener('click', () => setState(b));
    actions.append(b, ' ');
    return b;
  });
  return r;
}

function buildLayout(s) {
  const root = document.getElementById('pools');
  root.replaceChildren();
  rows.clear();
  for (const p of s.pools) {
    const head = el('tr', {}, ...['node', 'state', 'health', 'in flight', 'live sessions',
      'drain', 'requests/s', 'failovers/s (out, in)', 'last error', 'actions']
      .map(t => el('th', {textContent: t})));
    const body = el('tbody');
    for (const n of p.nodes) {
      const r = makeRow(p.name, n);
      rows.set(keyOf(p.name, n), r);
      body.append(r.tr);
    }
    const h2 = el('h2', {textContent: 'pool ' + p.name + ' '},
      el('small', {textContent: 'binder ' + p.binder + (p.health_checks ? ', health checks on' : '')}),
      el('small', {className: 'discovery'}));
    const section = el('section', {className: 'pool'}, h2, el('table', {}, el('thead', {}, head), body));
    section.dataset.pool = p.name;
    root.append(section);
  }
}

function updateRow(r, n, maxLive, key, now, list) {
  r.route.replaceChildren(el('b', {textContent: n.route}), el('br'),
    el('small', {textContent: n.address + (n.domain ? ' · domain ' + n.domain : '') + ' · weight ' + n.weight +
      (n.source && n.source !== 'file' ? ' · from ' + n.source : '') + (n.leaving ? ' · leaving' : '')}));
  r.state.textContent = n.state;
  r.state.className = 'state ' + n.state;
  r.health.textContent = n.health;
  r.health.className = 'health ' + n.health;
  r.inflight.textContent = n.in_flight;
  r.bar.style.width = (maxLive ? n.live_sessions / maxLive * 100 : 0) + '%';
  r.live.textContent = n.live_sessions;
  // Drain progress: from the live sessions when the drain was first seen down to none.
  const leaving = n.state === 'draining' || n.state === 'disabled';
  if (!leaving) {
    drainFrom.delete(key);
    r.drainTrack.hidden = true;
    r.drainText.textContent = '';
  } else {
    if (!drainFrom.has(key) || drainFrom.get(key) < n.live_sessions) drainFrom.set(key, n.live_sessions);
    const from = drainFrom.get(key);
    const done = n.drained && n.in_flight === 0;
    r.drainTrack.hidden = false;
    r.drainBar.style.width = (done || from === 0 ? 100 : (from - n.live_sessions) / from * 100) + '%';
    r.drainText.textContent = done ? 'drained' :
      plural(n.live_sessions, 'session', 'sessions') + ' left' + (n.in_flight ? ', ' + n.in_flight + ' in flight' : '');
    r.drainText.className = 'drain-text' + (done ? ' done' : '');
    r.drainBar.className = 'bar' + (done ? ' done' : '');
  }
  const req = rates(list, 'requests');
  const fout = rates(list, 'fout'), fin = rates(list, 'fin');
  draw(r.req, [{points: req, cls: 'req'}], now);
  draw(r.fo, [{points: fout, cls: 'fout'}, {points: fin, cls: 'fin'}], now);
  const last = (a) => a.length ? a[a.length - 1][1] : 0;
  r.req.now.textContent = fmt(last(req)) + '/s';
  r.fo.now.textContent = fmt(last(fout)) + ' / ' + fmt(last(fin)) + '/s';
  r.error.textContent = n.last_error || '';
  for (const b of r.buttons) b.hidden = b.dataset.state === n.state;
}

// A pool's DNS discovery in one line: what is looked up, how many nodes it named, and
// whether the set in use is stale (the last lookup failed, or an empty answer waits out its
// grace period).
function discoveryText(d) {
  if (!d) return '';
  return ' · discovery ' + d.kind + ' ' + d.name + ': ' + plural(d.records, 'node', 'nodes') +
    (d.stale ? ', stale' : '') + (d.error ? ' (' + d.error + ')' : '');
}

function render(s) {
  const now = Date.now();
  const shape = JSON.stringify(s.pools.map(p => [p.name, p.nodes.map(n => n.route)]));
  if (shape !== layout) { buildLayout(s); layout = shape; }
  document.getElementById('version').textContent = s.version;
  document.getElementById('config').textContent = s.config;
  document.getElementById('registry').textContent = s.registry.sessions + ' / ' + s.registry.max_sessions +
    ' sessions' + (s.registry.rejected ? ', ' + s.registry.rejected + ' not tracked (full)' : '');
  const cluster = document.getElementById('cluster');
  cluster.textContent = clusterText(s.cluster);
  cluster.hidden = !s.cluster;
  cluster.className = s.cluster && !s.cluster.connected ? 'bad' : '';
  cluster.title = (s.cluster && s.cluster.error) || '';
  for (const p of s.pools) {
    const section = document.querySelector('section.pool[data-pool="' + CSS.escape(p.name) + '"] .discovery');
    if (section) section.textContent = discoveryText(p.discovery);
    const maxLive = Math.max(0, ...p.nodes.map(n => n.live_sessions));
    for (const n of p.nodes) {
      const key = keyOf(p.name, n);
      const r = rows.get(key);
      if (r) updateRow(r, n, maxLive, key, now, record(key, n, now));
    }
  }
  polls++;
  document.body.dataset.polls = polls;
  const updated = document.getElementById('updated');
  updated.textContent = 'updated ' + new Date(now).toLocaleTimeString();
  updated.className = '';
}

async function poll() {
  try {
    const r = await fetch('/api/v1/status', {cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
  } catch (e) {
    const updated = document.getElementById('updated');
    updated.textContent = 'cannot read the status: ' + e.message + ' (showing the last one)';
    updated.className = 'bad';
  }
}

function say(text, bad) {
  const msg = document.getElementById('msg');
  msg.textContent = text;
  msg.className = bad ? 'bad' : '';
}

function token(ask) {
  let t = sessionStorage.getItem(TOKEN_KEY) || '';
  if (ask || (tokenRequired && !t)) {
    t = window.prompt('Admin token (admin.token or STICKYROUTE_ADMIN_TOKEN of the balancer):', '') || '';
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  }
  return t;
}

async function setState(button) {
  const {route, pool, state} = button.dataset;
  if (state === 'disabled' && !window.confirm('Disable ' + route + ' in pool ' + pool +
      '? It gets no traffic at all: each of its sessions moves to another node on its next request.')) {
    say('disable of ' + route + ' cancelled');
    return;
  }
  const url = '/api/v1/nodes/' + encodeURIComponent(route) + '/state?pool=' + encodeURIComponent(pool);
  for (let attempt = 0; attempt < 2; attempt++) {
    const t = token(attempt > 0);
    if (tokenRequired && !t) { say('no admin token given: nothing changed', true); return; }
    const headers = {'Content-Type': 'application/json'};
    if (t) headers['Authorization'] = 'Bearer ' + t;
    try {
      const r = await fetch(url, {method: 'POST', headers, body: JSON.stringify({state})});
      if (r.ok) {
        const c = await r.json();
        say(route + ': ' + c.nodes.map(n => n.previous + ' → ' + c.state + ' (pool ' + n.pool + ')').join(', '));
        await poll();
        return;
      }
      const body = await r.json().catch(() => ({}));
      if (r.status === 401 && attempt === 0) continue; // wrong or missing token: ask again
      say(r.status + ': ' + (body.error || r.statusText), true);
      return;
    } catch (e) {
      say(String(e), true);
      return;
    }
  }
  say('401: the admin token was refused', true);
}

render(JSON.parse(document.getElementById('initial').textContent));
setInterval(poll, POLL_MS);
