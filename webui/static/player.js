// The player page: served by a peer (its own stream, its /stats) and by the origin (its stream
// list at /, the CDN stream at /watch/NAME, its /stats). hls.js plays; Safari plays HLS natively.
'use strict';

// window.crowdsurf is what the browser test reads: hls.js errors and playback figures.
window.crowdsurf = {errors: [], fatal: [], hls: null};

(function () {
  const role = document.body.dataset.role;
  const stream = document.body.dataset.stream;

  if (role === 'origin' && !stream) { listStreams(); return; }
  const carries = document.body.dataset.carries;
  if (role === 'peer' && stream !== carries) {
    cs.status('this peer carries stream "' + carries + '", not "' + stream + '"', 'bad');
    document.getElementById('streams').hidden = false;
    document.querySelector('#streams h2').textContent = 'This peer carries one stream';
    document.querySelector('#streams table').hidden = true;
    const p = document.getElementById('streams-empty');
    p.hidden = false;
    p.replaceChildren('Watch ', cs.el('a', {href: '/'}, carries), ' here, or run another peer with the watch link of "' + stream + '".');
    return;
  }
  document.getElementById('watch').hidden = false;
  play(stream);
  if (role === 'peer') cs.every(1000, peerFigures); else cs.every(1000, originFigures);

  // play waits until the playlist exists (a page opened before the stream's first segment
  // would otherwise get a 404, which hls.js treats as fatal), then hands it to hls.js.
  async function play(name) {
    const video = document.getElementById('video');
    // ?ll=1 plays the LL-HLS playlist (fMP4 parts, blocking reloads) with hls.js's low-latency
    // mode: about 2 s behind live instead of about 6 s. Standard HLS (MPEG-TS) is the default, as
    // every browser and player plays it.
    // A stream whose codecs browsers play only from fMP4 (H.265, Opus) is LL-HLS alone: the
    // multivariant playlist then lists ll.m3u8 without index.m3u8.
    // Both playlists exist once the stream's first segment does: wait for it, then choose.
    const base = '/live/' + encodeURIComponent(name);
    for (let delay = 500; !(await playlistReady(base + '/index.m3u8')); delay = Math.min(delay * 1.5, 3000)) {
      cs.status('waiting for the stream to start…', 'warn');
      await new Promise(r => setTimeout(r, delay));
    }
    const ll = new URLSearchParams(location.search).get('ll') === '1' || await fmp4Only(base);
    window.crowdsurf.lowLatency = ll;
    const src = base + (ll ? '/ll.m3u8' : '/index.m3u8');
    const note = document.getElementById('player-note');
    const other = new URL(location.href);
    if (ll) other.searchParams.delete('ll'); else other.searchParams.set('ll', '1');
    note.replaceChildren('Plays ' + src + (role === 'peer'
      ? ' from this peer (localhost): the mesh and the CDN fallback fill it. '
      : ' from the origin: the CDN path, what peers fall back to. '),
      cs.el('a', {href: other.pathname + other.search}, ll ? 'Standard HLS' : 'Low latency (LL-HLS)'));
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls(ll
        // maxLiveSyncPlaybackRate lets hls.js play up to 1.5x for a moment to get back to the
        // target latency after a stall, instead of staying behind for the rest of the show.
        ? {lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, enableWorker: true, backBufferLength: 30}
        : {liveSyncDurationCount: 3, enableWorker: true, backBufferLength: 30});
      window.crowdsurf.hls = hls;
      hls.on(Hls.Events.ERROR, (_, d) => {
        const e = {type: d.type, details: d.details, fatal: d.fatal, at: Date.now()};
        window.crowdsurf.errors.push(e);
        if (window.crowdsurf.errors.length > 50) window.crowdsurf.errors.shift();
        if (!d.fatal) return;
        window.crowdsurf.fatal.push(e);
        cs.status('player error: ' + d.details + ', recovering', 'bad');
        if (d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else if (String(d.details).startsWith('manifest')) setTimeout(() => hls.loadSource(src), 2000);
        else hls.startLoad();
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = src;
    } else {
      cs.status('this browser cannot play HLS (no Media Source Extensions)', 'bad');
      return;
    }
    video.addEventListener('playing', () => cs.status('playing', 'good'));
    video.addEventListener('waiting', () => cs.status('buffering…', 'warn'));
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  }

  async function fmp4Only(base) {
    try {
      const r = await fetch(base + '/master.m3u8', {cache: 'no-store'});
      return r.ok && !(await r.text()).includes('index.m3u8');
    } catch (_) {
      return false;
    }
  }

  async function playlistReady(src) {
    try {
      return (await fetch(src, {cache: 'no-store'})).ok;
    } catch (_) {
      return false;
    }
  }

  // playerRows are the browser's own figures, the same on both pages.
  function playerRows() {
    const video = document.getElementById('video');
    let ahead = 0;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= video.currentTime + 0.5 && video.buffered.end(i) > video.currentTime) {
        ahead = video.buffered.end(i) - video.currentTime;
      }
    }
    const hls = window.crowdsurf.hls;
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    return [
      ['buffer ahead', cs.secs(ahead), 'seconds of media the browser holds beyond the playhead'],
      ['live latency', hls && hls.latency ? cs.secs(hls.latency) : '–', 'how far behind the live edge the playhead is (hls.js)'],
      ['dropped frames', q ? q.droppedVideoFrames + ' of ' + q.totalVideoFrames : '–'],
    ];
  }

  let last = null;
  const span = 60;     // seconds of history in the chart
  const samples = [];  // per poll: bit/s per series
  function sample(values) {
    samples.push(values.map(v => Math.max(0, v || 0) * 8));
    while (samples.length > span) samples.shift();
  }
  // rate is bytes per second of a counter since the previous poll.
  function rate(now, key, s) {
    if (!last || now <= last.t) return null;
    return (s[key] - last.s[key]) / ((now - last.t) / 1000);
  }

  async function peerFigures() {
    const s = await cs.json('/stats');
    const now = performance.now();
    document.getElementById('hero-value').textContent = cs.pct(s.offload);
    document.getElementById('hero-label').textContent = 'offload: share of bytes not from the origin';
    const meshOrigin = s.bytes_from_origin - s.bytes_from_http;
    const total = s.bytes_from_peers + s.bytes_from_origin;
    if (total > 0) {
      document.getElementById('mix').hidden = false;
      setWidth('mix-peers', s.bytes_from_peers / total);
      setWidth('mix-origin', meshOrigin / total);
      setWidth('mix-http', s.bytes_from_http / total);
    }
    const stripes = (s.depths || []).length;
    const inPeers = rate(now, 'bytes_from_peers', s), inOrigin = rate(now, 'bytes_from_origin', s);
    cs.figures(document.getElementById('figure-list'), [
      ['parents', s.parents + ' of ' + stripes + ' stripes', 'stripes a parent pushes to us'],
      ['neighbours', s.neighbours],
      ['children', s.children + ' (' + s.free_slots + ' free slots)', 'stripe subscriptions we push to other peers'],
      ['segments', s.segments_complete + ' complete' + (s.segments_with_fallback ? ', ' + s.segments_with_fallback + ' via CDN' : ''),
        'segments this peer holds whole and verified; the fallback fetched a late segment\'s missing chunks over HTTP'],
      ...(s.segments_abandoned ? [['segments abandoned', s.segments_abandoned]] : []),
      ['from peers', cs.bytes(s.bytes_from_peers) + (inPeers != null ? ' · ' + cs.bits(inPeers * 8) : '')],
      ['from origin', cs.bytes(s.bytes_from_origin) + (inOrigin != null ? ' · ' + cs.bits(inOrigin * 8) : ''),
        'over the mesh from the root plus the HTTP fallback'],
      ['… over HTTP', cs.bytes(s.bytes_from_http)],
      ['uploaded to peers', cs.bytes(s.bytes_to_peers)],
      ['stream bit rate', s.bitrate_bps ? cs.bits(s.bitrate_bps) : '–'],
      ...playerRows(),
    ]);
    drawStripes(s.depths || []);
    if (last) {
      sample([inPeers, rate(now, 'bytes_from_origin', s) - rate(now, 'bytes_from_http', s), rate(now, 'bytes_from_http', s)]);
      cs.chart(document.getElementById('chart'), document.getElementById('chart-legend'),
        [{name: 'peers', cls: 'peers'}, {name: 'origin mesh', cls: 'origin'}, {name: 'HTTP', cls: 'http'}], samples, span);
    }
    last = {t: now, s};
    if (window.crowdsurf.hls && document.getElementById('video').paused) cs.status(s.joining ? 'joining the swarm…' : 'paused', 'warn');
  }

  function setWidth(id, share) {
    document.getElementById(id).style.width = (Math.max(0, share) * 100).toFixed(2) + '%';
  }

  function drawStripes(depths) {
    const box = document.getElementById('stripes');
    box.replaceChildren(cs.el('h3', {}, 'depth per stripe'),
      cs.el('div', {class: 'chips'}, ...depths.map((d, i) => cs.el('span', {
        class: 'chip ' + (d < 0 ? 'none' : 'd' + Math.min(d, 4)),
        title: d < 0 ? 'no parent on stripe ' + i : 'stripe ' + i + ': ' + d + ' hops from the origin',
      }, 'stripe ' + i + ': ' + (d < 0 ? 'none' : 'depth ' + d)))));
  }

  async function originFigures() {
    const [info, s] = await Promise.all([cs.json('/v1/streams/' + encodeURIComponent(stream)), cs.json('/stats')]);
    const now = performance.now();
    if (last) {
      sample([rate(now, 'bytes_seeded', s), rate(now, 'bytes_http', s)]);
      cs.chart(document.getElementById('chart'), document.getElementById('chart-legend'),
        [{name: 'seeded to mesh', cls: 'origin'}, {name: 'HTTP (CDN)', cls: 'http'}], samples, span);
    }
    last = {t: now, s};
    const copies = s.bytes_produced > 0 ? (s.bytes_http + s.bytes_seeded) / s.bytes_produced : null;
    document.getElementById('hero-value').textContent = copies == null ? '–' : copies.toFixed(2);
    document.getElementById('hero-label').textContent = 'origin copies: bytes sent / bytes produced (all streams)';
    cs.figures(document.getElementById('figure-list'), [
      ['stream', info.live ? 'live' : 'not live'],
      ['codecs', (info.codecs || []).join(', ') || '–'],
      ['bit rate', info.bitrate_bps ? cs.bits(info.bitrate_bps) : '–'],
      ['newest segment', info.newest_seq != null ? '#' + info.newest_seq : '–'],
      ['produced', cs.bytes(s.bytes_produced)],
      ['served over HTTP', cs.bytes(s.bytes_http), 'the CDN path: players like this one and peers\' fallback'],
      ['seeded into the mesh', cs.bytes(s.bytes_seeded)],
      ...playerRows(),
    ]);
    const box = document.getElementById('stripes');
    if (info.watch_link && !box.dataset.link) {
      box.dataset.link = info.watch_link;
      box.replaceChildren(cs.el('h3', {}, 'watch link'), cs.el('code', {class: 'link'}, info.watch_link),
        cs.el('p', {class: 'hint'}, 'Viewers run: crowdsurf peer \'' + info.watch_link + '\''));
    }
  }

  function listStreams() {
    document.getElementById('streams').hidden = false;
    cs.every(2000, async () => {
      const list = (await cs.json('/v1/streams')).streams || [];
      list.sort((a, b) => a.name.localeCompare(b.name));
      document.getElementById('streams-empty').hidden = list.length > 0;
      document.getElementById('stream-rows').replaceChildren(...list.map(st => cs.el('tr', {},
        cs.el('td', {}, cs.el('a', {href: '/watch/' + encodeURIComponent(st.name)}, st.name)),
        cs.el('td', {class: st.live ? 'good' : 'warn'}, st.live ? 'live' : 'not live'),
        cs.el('td', {}, (st.codecs || []).join(', ')),
        cs.el('td', {}, st.bitrate_bps ? cs.bits(st.bitrate_bps) : '–'),
        cs.el('td', {}, st.newest_seq != null ? '#' + st.newest_seq : '–'),
        cs.el('td', {}, cs.el('code', {class: 'link'}, st.watch_link || '–')))));
      cs.status(list.length + (list.length === 1 ? ' stream' : ' streams'), 'good');
    });
  }
})();
