// Helpers shared by the player page and the tracker's dashboard. Plain browser JS, no build step.
'use strict';

const cs = {
  bytes(n) {
    if (n == null || isNaN(n)) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  },
  bits(bps) {
    if (bps == null || isNaN(bps) || bps < 0) return '–';
    if (bps >= 1e6) return (bps / 1e6).toFixed(2) + ' Mbit/s';
    return (bps / 1e3).toFixed(0) + ' kbit/s';
  },
  pct(x) {
    if (x == null || isNaN(x)) return '–';
    return (x * 100).toFixed(1) + ' %';
  },
  secs(s) {
    if (s == null || isNaN(s)) return '–';
    return s.toFixed(1) + ' s';
  },
  // el builds an element: el('td', {class: 'x'}, 'text', child, ...).
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  },
  svg(tag, attrs, ...children) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
    return e;
  },
  async json(url) {
    const r = await fetch(url, {cache: 'no-store'});
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new Error(url + ': ' + msg);
    }
    return r.json();
  },
  status(text, kind) {
    const s = document.getElementById('status');
    if (!s) return;
    s.textContent = text;
    s.className = 'status' + (kind ? ' ' + kind : '');
  },
  // figures fills a <dl> with [label, value, title?] rows, reusing its elements.
  figures(dl, rows) {
    while (dl.children.length > rows.length * 2) dl.lastChild.remove();
    rows.forEach(([label, value, title], i) => {
      let dt = dl.children[i * 2], dd = dl.children[i * 2 + 1];
      if (!dt) { dt = dl.appendChild(cs.el('dt')); dd = dl.appendChild(cs.el('dd')); }
      if (dt.textContent !== label) dt.textContent = label;
      if (dd.textContent !== String(value)) dd.textContent = value;
      if (title) dt.title = title; else dt.removeAttribute('title');
    });
  },
  // chart draws stacked areas of the last samples into an SVG with viewBox 0 0 300 64.
  // series: [{name, cls}], samples: [[v0, v1, ...], ...] oldest first, one per second.
  chart(svg, legend, series, samples, span) {
    const W = 300, H = 64;
    const max = Math.max(1, ...samples.map(s => s.reduce((a, b) => a + b, 0))) * 1.15;
    const x = i => W - (samples.length - 1 - i) * (W / (span - 1));
    const parts = [];
    const base = samples.map(() => 0);
    series.forEach((se, k) => {
      const top = samples.map((s, i) => base[i] + s[k]);
      if (samples.length > 1) {
        const up = top.map((v, i) => x(i).toFixed(1) + ',' + (H - v / max * H).toFixed(1));
        const down = base.map((v, i) => x(i).toFixed(1) + ',' + (H - v / max * H).toFixed(1)).reverse();
        parts.push(cs.svg('polygon', {class: 'area ' + se.cls, points: up.concat(down).join(' ')}));
      }
      top.forEach((v, i) => { base[i] = v; });
    });
    svg.replaceChildren(...parts);
    const last = samples.length ? samples[samples.length - 1] : [];
    legend.replaceChildren(...series.map((se, k) => cs.el('span', {},
      cs.el('span', {class: 'dot ' + se.cls}), se.name + ' ' + cs.bits(last[k] || 0))),
      cs.el('span', {class: 'chart-span'}, 'last ' + span + ' s'));
  },
  // every runs f now and then every ms milliseconds, never two at once.
  every(ms, f) {
    const tick = async () => {
      try { await f(); } catch (e) { console.warn(e); cs.status(e.message, 'bad'); }
      setTimeout(tick, ms);
    };
    tick();
  },
};
