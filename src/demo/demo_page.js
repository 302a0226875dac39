// The demo counter page's script (embedded by `demo::node`, only when the node knows the
// demo's control listener). The whole failover story in one page: count, stop the node that
// answered, count again, see another node answer with the count going on and the cookie rebound.
'use strict';

const control = document.body.dataset.control;
let counted = 0;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

// The session cookie the browser holds (the demo's cookies are not HttpOnly, so it can be shown).
function sessionCookie() {
  const c = document.cookie.split('; ').filter(c => c.startsWith('JSESSIONID='));
  return c.length ? c.join('; ') : '(none)';
}

async function count() {
  const before = sessionCookie();
  const answer = document.getElementById('answer');
  try {
    const r = await fetch('count', {cache: 'no-store', credentials: 'same-origin'});
    const body = await r.json().catch(() => null);
    if (!r.ok || !body) throw new Error('HTTP ' + r.status + (body && body.error ? ': ' + body.error : ''));
    const after = sessionCookie();
    counted++;
    document.getElementById('node-cell').textContent = body.node;
    document.getElementById('node').textContent = body.node;
    document.getElementById('session').textContent = body.session;
    document.getElementById('count').textContent = body.count;
    answer.textContent = body.node + ' answered, count ' + body.count +
      (before === after ? '; the cookie stayed ' + after : '; the cookie changed from ' + before + ' to ' + after);
    answer.className = '';
    const row = el('tr', {className: before === after ? '' : 'changed'},
      el('td', {textContent: counted}), el('td', {className: 'answered', textContent: body.node}),
      el('td', {textContent: body.count}), el('td', {className: 'before'}, el('code', {textContent: before})),
      el('td', {className: 'after'}, el('code', {textContent: after})));
    const tbody = document.querySelector('#history tbody');
    tbody.prepend(row);
    while (tbody.children.length > 10) tbody.lastChild.remove();
  } catch (e) {
    answer.textContent = 'count failed: ' + e.message;
    answer.className = 'down';
  }
}

async function nodeAction(route, action) {
  const msg = document.getElementById('control-msg');
  try {
    const r = await fetch(control + '/nodes/' + encodeURIComponent(route) + '/' + action, {method: 'POST'});
    const text = await r.text();
    if (!r.ok) throw new Error(text.trim() || 'HTTP ' + r.status);
    const s = JSON.parse(text);
    msg.textContent = route + (action === 'stop' ? ' stopped' : ' started') + (s.changed === false ? ' (it already was)' : '');
    msg.className = '';
  } catch (e) {
    msg.textContent = action + ' ' + route + ' failed: ' + e.message;
    msg.className = 'down';
  }
  await nodes();
}

const rows = new Map();

async function nodes() {
  let list;
  try {
    const r = await fetch(control + '/nodes', {cache: 'no-store'});
    list = await r.json();
  } catch (e) {
    document.getElementById('control-msg').textContent = 'cannot reach the demo control listener at ' + control;
    return;
  }
  const tbody = document.querySelector('#nodes tbody');
  for (const n of list) {
    let r = rows.get(n.route);
    if (!r) {
      const tr = el('tr');
      tr.dataset.route = n.route;
      r = {tr, process: el('td', {className: 'process'}), balancer: el('td', {className: 'balancer'}),
        stop: el('button', {type: 'button', textContent: 'stop ' + n.route}),
        start: el('button', {type: 'button', textContent: 'start ' + n.route})};
      r.stop.dataset.action = 'stop';
      r.start.dataset.action = 'start';
      r.stop.addEventListener('click', () => nodeAction(n.route, 'stop'));
      r.start.addEventListener('click', () => nodeAction(n.route, 'start'));
      tr.append(el('td', {textContent: n.route}), r.process, r.balancer, el('td', {}, r.stop, ' ', r.start));
      tbody.append(tr);
      rows.set(n.route, r);
    }
    r.process.textContent = n.running ? 'running' : 'stopped';
    r.process.className = 'process ' + (n.running ? 'running' : 'stopped');
    r.balancer.textContent = n.health + ', ' + n.state;
    r.balancer.className = 'balancer ' + n.health;
    r.stop.disabled = !n.running;
    r.start.disabled = n.running;
  }
}

document.getElementById('count-form').addEventListener('submit', (e) => { e.preventDefault(); count(); });
document.getElementById('answer').textContent = 'your cookie: ' + sessionCookie();
nodes();
setInterval(nodes, 1000);
