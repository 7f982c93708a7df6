// The tracker's dashboard: each stream's swarm drawn live from GET /v1/swarm/NAME, one column
// per stripe, the origin at the root and peers in rows by depth. Peers are short handles the
// tracker salts per run; it shows addresses only when started with --dashboard-addrs.
'use strict';

(function () {
  const leaveLinger = 4000; // ms a peer that left stays drawn, fading
  const joinGlow = 4000;    // ms a new peer is drawn highlighted
  let streams = [];
  let sel = fromHash();     // the stream drawn: {name, key}; a name may be registered under several keys
  const seen = new Map();   // handle -> {first: ms, last: ms, peer}
  let seenStream = null;

  function fromHash() {
    const h = decodeURIComponent(location.hash.slice(1));
    const at = h.lastIndexOf('@');
    return at > 0 ? {name: h.slice(0, at), key: h.slice(at + 1)} : {name: h, key: ''};
  }

  cs.every(3000, async () => {
    streams = await cs.json('/v1/streams');
    const cur = streams.find(s => s.name === sel.name && (!sel.key || s.public_key === sel.key)) || streams[0];
    sel = cur ? {name: cur.name, key: cur.public_key} : {name: '', key: ''};
    document.getElementById('empty').hidden = streams.length > 0;
    if (!cur) document.getElementById('swarm').hidden = true;
    const names = new Map();
    for (const s of streams) names.set(s.name, (names.get(s.name) || 0) + 1);
    document.getElementById('tabs').replaceChildren(...streams.map(s => cs.el('a', {
      href: '#' + encodeURIComponent(s.name + '@' + s.public_key),
      class: s === cur ? 'tab on' : 'tab',
      title: 'key ' + s.public_key,
    }, s.name + (names.get(s.name) > 1 ? ' · ' + s.public_key.slice(0, 6) : '') + ' (' + s.swarm_size + ')')));
  });
  window.addEventListener('hashchange', () => { sel = fromHash(); });

  cs.every(1000, async () => {
    if (!sel.name || !sel.key) return;
    const sv = await cs.json('/v1/swarm/' + encodeURIComponent(sel.name) + '?key=' + encodeURIComponent(sel.key));
    document.getElementById('swarm').hidden = false;
    track(sv);
    draw(sv);
    figures(sv);
    cs.status(sv.swarm_size + (sv.swarm_size === 1 ? ' peer' : ' peers') + ' · updated ' + new Date().toLocaleTimeString(), 'good');
  });

  // track notes joins and leaves between answers; the tracker itself keeps no history.
  function track(sv) {
    const now = Date.now();
    const first = seenStream !== sv.stream + '@' + sv.public_key;
    if (first) { seen.clear(); seenStream = sv.stream + '@' + sv.public_key; document.getElementById('events').replaceChildren(); }
    const present = new Set();
    for (const p of sv.peers) {
      present.add(p.handle);
      const s = seen.get(p.handle);
      if (s && !s.gone) { s.last = now; s.peer = p; continue; }
      seen.set(p.handle, {first: first ? 0 : now, last: now, peer: p});
      if (!first) event('joined', p.handle);
    }
    if (first && sv.peers.length) event('in the swarm', sv.peers.length + ' peers');
    for (const [h, s] of seen) {
      if (present.has(h)) continue;
      if (!s.gone) { s.gone = now; if (!sv.truncated) event('left', h); }
      if (now - s.gone > leaveLinger) seen.delete(h);
    }
  }

  function event(what, who) {
    const ol = document.getElementById('events');
    ol.prepend(cs.el('li', {class: what === 'left' ? 'left' : 'joined'},
      cs.el('time', {}, new Date().toLocaleTimeString()), ' ', cs.el('b', {}, who), ' ', what));
    while (ol.children.length > 12) ol.lastChild.remove();
  }

  // Hues go round by the golden angle in order of appearance, so neighbours in time differ.
  const hues = new Map();
  function hue(handle) {
    if (!hues.has(handle)) {
      if (hues.size > 5000) hues.clear();
      hues.set(handle, (hues.size * 137.508 + 200) % 360);
    }
    return hues.get(handle);
  }

  function draw(sv) {
    const svg = document.getElementById('graph');
    const W = Math.max(480, svg.parentElement.clientWidth - 32);
    const S = Math.max(1, sv.stripes);
    const laneW = W / S, span = laneW - 28;
    const now = Date.now();
    // Every peer drawn: present ones and those that just left (faded).
    const drawn = [...seen.entries()].map(([h, s]) => ({handle: h, p: s.peer, gone: s.gone, fresh: s.first && now - s.first < joinGlow}));
    // cells[depth][stripe] lists the peers at that depth of that stripe; depth -1: no parent.
    const cells = new Map();
    let maxDepth = 1;
    for (const d of drawn) {
      for (let s = 0; s < S; s++) {
        const depth = s < d.p.depths.length ? d.p.depths[s] : -1;
        maxDepth = Math.max(maxDepth, depth);
        if (!cells.has(depth)) cells.set(depth, Array.from({length: S}, () => []));
        cells.get(depth)[s].push(d);
      }
    }
    const depths = [];
    for (let d = 1; d <= maxDepth; d++) depths.push(d);
    if (cells.has(-1)) depths.push(-1);
    // One node size for the whole drawing; a crowded cell wraps onto more lines.
    const widest = Math.max(1, ...[...cells.values()].flatMap(row => row.map(c => c.length)));
    const step = Math.max(9, Math.min(30, span / Math.max(1, widest - 1)));
    const r = Math.max(3, Math.min(10, step / 2 - 1.5));
    const perLine = Math.max(1, Math.floor(span / step) + 1);
    const labels = r >= 8;
    const lineH = labels ? 2 * r + 20 : step;
    const top = 56;
    const rowTop = new Map();
    let y = top + 30;
    for (const d of depths) {
      rowTop.set(d, y);
      const lines = Math.max(1, ...(cells.get(d) || [[]]).map(c => Math.ceil(c.length / perLine)));
      y += lines * lineH + 26;
    }
    const H = y + 10;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    const ox = W / 2, oy = top - 24;

    const g = {lanes: cs.svg('g'), edges: cs.svg('g', {class: 'edges'}), nodes: cs.svg('g')};
    for (let s = 0; s < S; s++) {
      const x0 = s * laneW;
      g.lanes.append(cs.svg('rect', {class: 'lane' + (s % 2 ? ' odd' : ''), x: x0 + 4, y: top + 8, width: laneW - 8, height: H - top - 12, rx: 8}));
      g.lanes.append(cs.svg('text', {class: 'lane-label', x: x0 + laneW / 2, y: H - 10}, 'stripe ' + s));
    }
    for (const d of depths) {
      g.lanes.append(cs.svg('text', {class: 'row-label', x: 10, y: rowTop.get(d) - 6}, d < 0 ? 'no parent' : 'depth ' + d));
    }
    // Where each peer sits in each stripe, then the lines to its parents, then the nodes on top.
    const pos = new Map(); // handle + ':' + stripe -> {x, y}
    for (const [depth, row] of cells) {
      row.forEach((list, s) => {
        list.forEach((d, i) => {
          const line = Math.floor(i / perLine), inLine = Math.min(perLine, list.length - line * perLine);
          const x = s * laneW + laneW / 2 - step * (inLine - 1) / 2 + (i % perLine) * step;
          pos.set(d.handle + ':' + s, {x, y: rowTop.get(depth) + r + 6 + line * lineH});
        });
      });
    }
    for (const [depth, row] of cells) {
      row.forEach((list, s) => {
        for (const d of list) {
          const at = pos.get(d.handle + ':' + s);
          const parent = depth === 1 ? {x: ox, y: oy + 14 - r} : depth > 1 && d.p.parents ? pos.get(d.p.parents[s] + ':' + s) : null;
          if (!parent) continue;
          g.edges.append(cs.svg('line', {class: 'edge' + (depth === 1 ? ' root' : '') + (d.gone ? ' gone' : ''),
            x1: parent.x, y1: parent.y + r + (labels && depth > 1 ? 15 : 0), x2: at.x, y2: at.y - r}));
        }
        list.forEach(d => {
          const {x, y: cy} = pos.get(d.handle + ':' + s);
          const cls = 'node peer' + (d.gone ? ' gone' : '') + (d.fresh ? ' fresh' : '') + (depth < 0 ? ' orphan' : '');
          const title = 'peer ' + d.handle + (d.gone ? ' (left)' : '') +
            '\ndepths ' + d.p.depths.map(x => x < 0 ? '–' : x).join(' ') +
            '\nfree slots ' + d.p.free_slots + ', upload ' + cs.bits(d.p.upload_bps) +
            (d.p.addr ? '\n' + d.p.addr : '');
          const c = cs.svg('circle', {cx: x, cy: cy, r: r});
          c.style.fill = 'hsl(' + hue(d.handle) + ' 65% 55%)';
          const node = cs.svg('g', {class: cls, 'data-handle': d.handle}, cs.svg('title', {}, title), c);
          if (labels) node.append(cs.svg('text', {x: x, y: cy + r + 12}, d.handle.slice(0, 4)));
          g.nodes.append(node);
        });
      });
    }
    const origin = cs.svg('g', {class: 'node origin'},
      cs.svg('title', {}, 'origin' + (sv.origin_addr ? ' ' + sv.origin_addr : '')),
      cs.svg('rect', {x: ox - 42, y: oy - 14, width: 84, height: 28, rx: 14}),
      cs.svg('text', {x: ox, y: oy + 5}, 'origin'));
    svg.replaceChildren(g.lanes, g.edges, g.nodes, origin);
  }

  function figures(sv) {
    document.getElementById('hero-value').textContent = cs.pct(sv.tree_offload);
    const perStripe = sv.stripe_stats.map(s => s.from_origin).join(' · ');
    const maxDepth = Math.max(0, ...sv.stripe_stats.map(s => s.max_depth));
    const orphans = sv.stripe_stats.reduce((a, s) => a + s.unattached, 0);
    const rows = [
      ['peers', sv.swarm_size + (sv.truncated ? ' (first ' + sv.peers.length + ' drawn)' : '')],
      ['origin children per stripe', perStripe, 'peers at depth 1: the copies the origin pushes'],
      ['deepest', maxDepth ? 'depth ' + maxDepth : '–'],
      ['stripe slots without parent', orphans, 'such stripes come by repair or the CDN fallback'],
      ['upload budget', cs.bits(sv.upload_bps) + (sv.bitrate_bps ? ' · ' + (sv.upload_bps / sv.bitrate_bps).toFixed(0) + '×' : ''),
        'sum of what the peers offer to upload; × the stream bit rate'],
      ['stream bit rate', sv.bitrate_bps ? cs.bits(sv.bitrate_bps) : '–'],
      ['segment duration', sv.segment_duration_ms ? (sv.segment_duration_ms / 1000).toFixed(1) + ' s' : '–'],
      ['stripes', sv.stripes],
    ];
    if (sv.origin_addr) rows.push(['origin mesh address', sv.origin_addr]);
    cs.figures(document.getElementById('figure-list'), rows);
  }
})();
