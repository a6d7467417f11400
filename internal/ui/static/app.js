// fieldsync ui: the page's one script (docs/ui.md). Plain JavaScript, no
// build step, nothing loaded from elsewhere.
//
// Rules kept throughout: user text (values, names, notes, reasons, errors)
// goes into the page as text nodes only, never as HTML; every element
// holding user text has dir="auto" (or is a <bdi>), so right-to-left text is
// laid out right to left within its own box and cannot reorder what is
// around it.
'use strict';

(function () {
  const token = document.querySelector('meta[name="fieldsync-token"]').content;
  const view = document.getElementById('view');
  const errorBox = document.getElementById('error');
  const noticeBox = document.getElementById('notice');
  const liveBox = document.getElementById('live');

  // Page state that survives re-renders.
  const state = { search: null, spaces: [], renderGen: 0, events: null, eventsSpace: null };

  // ---- DOM helpers: text only -------------------------------------------

  // el builds an element: attrs are set as attributes (never HTML), the
  // children are nodes or strings (made text nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'onclick' || k === 'onsubmit' || k === 'onchange') {
        e.addEventListener(k.slice(2), v);
      } else {
        e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  // user wraps user text in a <bdi>: isolated, its direction from its
  // first strong character.
  function user(text, cls) {
    return el('bdi', { class: cls }, text === undefined || text === null ? '' : String(text));
  }

  // controls matches the bidi controls that can make text look like other
  // text; values holding them are flagged (the CLI escapes them).
  const controls = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/;
  function flagged(text) {
    return controls.test(text || '') ? el('span', { class: 'badge', title: 'this text holds invisible direction controls that change how it reads' }, 'direction controls') : null;
  }

  function shownValue(v, b64) {
    if (b64) {
      let n = 0;
      try { n = atob(b64).length; } catch (e) { n = '?'; }
      return '(binary, ' + n + ' bytes)';
    }
    return v;
  }

  function officerOf(officer, bureau) {
    const o = officer || '?';
    return bureau ? [user(o), ' (', user(bureau), ')'] : [user(o)];
  }

  function shortID(id) { return (id || '').slice(0, 8); }

  function device(id) { return el('span', { class: 'mono', title: id }, shortID(id)); }

  function link(href, ...children) { return el('a', { href: href }, ...children); }

  function recordHref(space, record) {
    return '#record/' + encodeURIComponent(space) + '/' + encodeURIComponent(record);
  }

  function spaceName(id) {
    const s = state.spaces.find((x) => x.id === id);
    return s ? s.name : id;
  }

  // ---- calls to the server ----------------------------------------------

  class CallError extends Error {
    constructor(detail, status) {
      super(detail.message || detail.code || ('HTTP ' + status));
      this.code = detail.code || '';
      this.hint = detail.hint || '';
      this.status = status;
    }
  }

  async function call(method, body) {
    let res;
    try {
      res = await fetch('/api/' + method, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Fieldsync-Token': token },
        body: JSON.stringify(body || {}),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new CallError({ code: 'unreachable', message: 'the ui server does not answer (was `fieldsync ui` stopped?)' }, 0);
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      throw new CallError((data && data.error) || { code: 'http', message: 'HTTP ' + res.status }, res.status);
    }
    return data;
  }

  function errorNodes(prefix, err) {
    const nodes = [el('strong', {}, prefix + ': '), user(err.message)];
    if (err.code) nodes.push(el('span', { class: 'muted' }, ' [' + err.code + ']'));
    if (err.hint) nodes.push(el('div', { class: 'muted' }, 'what to do: ', user(err.hint)));
    return nodes;
  }

  function showError(prefix, err) {
    errorBox.replaceChildren(...errorNodes(prefix, err));
    errorBox.hidden = false;
  }

  function clearError() { errorBox.hidden = true; errorBox.replaceChildren(); }

  function showNotice(...children) {
    noticeBox.replaceChildren(...children);
    noticeBox.hidden = false;
  }

  function clearNotice() { noticeBox.hidden = true; noticeBox.replaceChildren(); }

  // ---- routing -----------------------------------------------------------

  function route() {
    const h = location.hash.replace(/^#/, '');
    const parts = h.split('/').map((p) => { try { return decodeURIComponent(p); } catch (e) { return p; } });
    if (parts[0] === 'space' && parts.length === 2) return { view: 'space', space: parts[1] };
    if (parts[0] === 'record' && parts.length === 3) return { view: 'record', space: parts[1], record: parts[2] };
    return { view: 'home' };
  }

  async function render() {
    const gen = ++state.renderGen;
    const r = route();
    watch(r.space || '');
    try {
      state.spaces = (await call('spaces')) || [];
      let nodes;
      if (r.view === 'space') nodes = await spaceView(r.space);
      else if (r.view === 'record') nodes = await recordView(r.space, r.record);
      else nodes = await homeView();
      if (gen !== state.renderGen) return; // a later render took over
      clearError();
      view.replaceChildren(...nodes);
      view.dataset.view = r.view;
      view.dataset.rendered = String(gen);
    } catch (err) {
      if (gen !== state.renderGen) return;
      showError('could not load this view', err);
    }
  }

  // ---- home: search, spaces, conflicts -------------------------------------

  async function homeView() {
    const conflicts = (await call('conflicts-list', {})) || [];
    const q = el('input', { id: 'search-q', type: 'search', dir: 'auto', placeholder: 'a name, a place… in any script', 'aria-label': 'search' });
    const spaceSel = el('select', { id: 'search-space', 'aria-label': 'space' }, el('option', { value: '' }, 'all spaces'),
      state.spaces.map((s) => el('option', { value: s.id, dir: 'auto' }, s.name)));
    const field = el('input', { id: 'search-field', type: 'text', dir: 'auto', placeholder: 'field (any)', size: 12, 'aria-label': 'field' });
    const results = el('div', { id: 'search-results' });
    if (state.search) {
      q.value = state.search.query;
      spaceSel.value = state.search.space;
      field.value = state.search.field;
    }
    const form = el('form', { id: 'search-form', class: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      state.search = { query: q.value, space: spaceSel.value, field: field.value };
      runSearch(results);
    } }, q, spaceSel, field, el('button', { type: 'submit', id: 'search-go' }, 'Search'));
    if (state.search && state.search.query) runSearch(results);

    const spaces = el('table', { id: 'spaces' },
      el('tr', {}, el('th', {}, 'space'), el('th', {}, 'ID'), el('th', {}, 'owner'), el('th', {}, 'released to'), el('th', {}, 'unreadable')),
      state.spaces.map((s) => el('tr', { 'data-space': s.id },
        el('td', { dir: 'auto' }, link('#space/' + encodeURIComponent(s.id), s.name)),
        el('td', { class: 'id' }, s.id),
        el('td', { dir: 'auto' }, s.owner),
        el('td', { dir: 'auto' }, (s.release || []).join(', ')),
        el('td', {}, s.unreadable ? String(s.unreadable) : ''))));

    const ctable = conflicts.length === 0 ? el('p', { class: 'muted' }, 'no conflicts') :
      el('table', { id: 'conflicts-list' },
        el('tr', {}, el('th', {}, 'space'), el('th', {}, 'record'), el('th', {}, 'field'), el('th', {}, 'values')),
        conflicts.map((c) => el('tr', {},
          el('td', { dir: 'auto' }, spaceName(c.space)),
          el('td', { dir: 'auto' }, link(recordHref(c.space, c.record), c.record)),
          el('td', { dir: 'auto' }, c.field),
          el('td', {}, String((c.siblings || []).length)))));

    return [el('h1', {}, 'Search'), form, results, el('h2', {}, 'Spaces'), spaces, el('h2', {}, 'Conflicts'), ctable];
  }

  async function runSearch(results) {
    const s = state.search;
    if (!s || !s.query.trim()) {
      results.replaceChildren(el('p', { class: 'muted' }, 'type something to search for'));
      return;
    }
    results.replaceChildren(el('p', { class: 'muted' }, 'searching…'));
    try {
      const res = await call('find', { query: s.query, space: s.space || undefined, field: s.field || undefined, limit: 50 });
      const hits = res.hits || [];
      const nodes = [el('p', { class: 'muted', id: 'search-summary' }, hits.length + ' of ' + res.searched + ' records match')];
      if (res.building) nodes.push(el('p', { class: 'badge' }, 'the agent is still building its search index: some records may be missing'));
      if (hits.length > 0) {
        nodes.push(el('table', { id: 'search-hits' },
          el('tr', {}, el('th', {}, 'record'), el('th', {}, 'space'), el('th', {}, 'field'), el('th', {}, 'value'), el('th', {}, 'score')),
          hits.map((h) => el('tr', { 'data-record': h.record },
            el('td', { dir: 'auto' }, link(recordHref(h.space, h.record), h.record)),
            el('td', { dir: 'auto' }, h.space_name || h.space),
            el('td', { dir: 'auto' }, h.field),
            el('td', { dir: 'auto', class: 'value' }, h.value, flagged(h.value)),
            el('td', {}, Number(h.score).toFixed(2))))));
      }
      results.replaceChildren(...nodes);
    } catch (err) {
      results.replaceChildren(el('div', { id: 'search-error', class: 'conflict' }, errorNodes('search failed', err)));
    }
  }

  // ---- a space: its records ------------------------------------------------

  async function spaceView(space) {
    const recs = (await call('records', { space: space })) || [];
    return [
      el('h1', {}, 'Space ', user(spaceName(space))),
      el('p', { class: 'mono muted' }, space),
      recs.length === 0 ? el('p', { class: 'muted' }, 'no records') :
        el('table', { id: 'records' },
          el('tr', {}, el('th', {}, 'record'), el('th', {}, 'fields'), el('th', {}, 'conflicts'), el('th', {}, 'state')),
          recs.map((r) => el('tr', { 'data-record': r.id },
            el('td', { dir: 'auto' }, link(recordHref(space, r.id), r.id)),
            el('td', {}, String(r.fields)),
            el('td', {}, r.conflicts ? el('span', { class: 'badge' }, String(r.conflicts)) : ''),
            el('td', {}, r.deleted ? 'deleted' : '')))),
    ];
  }

  // ---- a record: fields, sets, notes, conflicts, history -------------------

  async function recordView(space, record) {
    const ref = { space: space, record: record };
    const [rec, cs, hist] = await Promise.all([call('record', ref), call('conflicts', ref), call('history', ref)]);
    const nodes = [
      el('p', {}, link('#space/' + encodeURIComponent(rec.space), '← ', user(spaceName(rec.space)))),
      el('h1', {}, 'Record ', user(rec.id, 'record-id')),
    ];
    if (rec.deleted) {
      nodes.push(el('p', { class: 'badge' }, rec.delete_conflict ?
        'deleted, but an edit made concurrently with the delete survives (conflict): the fields below are that edit' : 'deleted'));
    }
    nodes.push(el('h2', {}, 'Fields'));
    const names = Object.keys(rec.fields || {}).sort();
    if (names.length === 0) {
      nodes.push(el('p', { class: 'muted' }, 'no fields'));
    } else {
      nodes.push(el('table', { id: 'fields' },
        el('tr', {}, el('th', {}, 'field'), el('th', {}, 'value'), el('th', {}, 'officer'), el('th', {}, 'device'), el('th', {}, 'time')),
        names.map((name) => {
          const f = rec.fields[name];
          const w = (f.siblings || [])[0] || {};
          return el('tr', { 'data-field': name },
            el('td', { dir: 'auto', class: 'field' }, name),
            el('td', { dir: 'auto', class: 'value' }, shownValue(f.value, w.value_base64), flagged(f.value),
              f.conflict ? el('a', { class: 'badge', href: '#' + location.hash.slice(1), 'data-goto': 'conflict-' + name }, 'conflict: ' + f.siblings.length + ' values') : null),
            el('td', { dir: 'auto' }, officerOf(w.officer, w.bureau)),
            el('td', {}, device(w.author)),
            el('td', { class: 'mono' }, w.hlc || ''));
        })));
    }
    const sets = Object.keys(rec.sets || {}).sort();
    if (sets.length > 0) {
      nodes.push(el('h2', {}, 'Sets'), el('table', { id: 'sets' },
        el('tr', {}, el('th', {}, 'set'), el('th', {}, 'elements')),
        sets.map((name) => el('tr', { 'data-set': name },
          el('td', { dir: 'auto' }, name),
          el('td', {}, el('ul', {}, (rec.sets[name].elements || []).map((x) => el('li', { dir: 'auto' }, x, flagged(x)))))))));
    }
    const notes = rec.notes || [];
    if (notes.length > 0) {
      nodes.push(el('h2', {}, 'Notes'), el('ul', { id: 'notes', class: 'notes' },
        notes.map((n) => el('li', { 'data-note': n.id },
          el(n.removed ? 's' : 'div', { dir: 'auto', class: 'note-text' }, n.text, flagged(n.text)),
          el('div', { class: 'muted' }, officerOf(n.officer, ''), ' · ', device(n.author), ' · ', el('span', { class: 'mono' }, n.hlc), n.removed ? ' · removed' : '')))));
    }
    nodes.push(...conflictsSection(cs));
    nodes.push(...historySection(hist || []));
    return nodes;
  }

  function siblingCard(s, i, groupName) {
    const radio = el('input', { type: 'radio', name: groupName, value: String(i), 'aria-label': 'keep value ' + (i + 1) });
    const meta = el('dl', {},
      el('dt', {}, 'officer'), el('dd', { dir: 'auto', class: 'officer' }, s.officer || '?'),
      el('dt', {}, 'bureau'), el('dd', { dir: 'auto', class: 'bureau' }, s.bureau || '?'),
      el('dt', {}, 'device'), el('dd', { class: 'mono device', title: s.author }, s.author),
      el('dt', {}, 'time'), el('dd', { class: 'mono time' }, s.hlc),
      el('dt', {}, 'dot'), el('dd', { class: 'mono' }, s.dot));
    const card = el('div', { class: 'sibling', 'data-dot': s.dot },
      el('label', {}, radio, ' keep value ' + (i + 1)),
      el('div', { dir: 'auto', class: 'value' }, shownValue(s.value, s.value_base64), flagged(s.value)),
      meta);
    if (s.resolution) card.append(el('p', { class: 'muted' }, 'itself a resolution', s.resolution.reason ? [': ', user(s.resolution.reason)] : ''));
    return card;
  }

  function conflictsSection(cs) {
    const out = [];
    const fields = cs.fields || [];
    if (fields.length > 0) {
      out.push(el('h2', { id: 'conflicts' }, 'Conflicts'));
      fields.forEach((f, fi) => {
        const group = 'pick-' + fi;
        const sibs = f.siblings || [];
        const other = el('input', { type: 'text', dir: 'auto', class: 'other-value', placeholder: 'or type another value', 'aria-label': 'another value' });
        const otherRadio = el('input', { type: 'radio', name: group, value: 'other', 'aria-label': 'use another value' });
        other.addEventListener('input', () => { otherRadio.checked = true; });
        const reason = el('textarea', { dir: 'auto', class: 'reason', placeholder: 'why this value (kept in the signed history)', 'aria-label': 'reason' });
        const button = el('button', { type: 'submit', class: 'resolve' }, 'Resolve');
        const status = el('div', { class: 'resolve-status', role: 'status' });
        const form = el('form', { class: 'resolve-form', onsubmit: async (ev) => {
          ev.preventDefault();
          // The values' radios are in their cards, beside the form.
          const picked = form.parentNode.querySelector('input[name="' + group + '"]:checked');
          if (!picked) {
            status.replaceChildren(el('span', { class: 'sig-invalid' }, 'pick a value, or type another one'));
            return;
          }
          const req = { space: cs.space, record: cs.record, field: f.field, dots: sibs.map((s) => s.dot), reason: reason.value };
          if (picked.value === 'other') {
            req.value = other.value;
          } else {
            const s = sibs[Number(picked.value)];
            if (s.value_base64) req.value_base64 = s.value_base64; else req.value = s.value;
          }
          button.disabled = true;
          status.replaceChildren('resolving…');
          try {
            await call('resolve', req);
            showNotice('resolved field ', user(f.field));
            await render();
          } catch (err) {
            button.disabled = false;
            status.replaceChildren(...errorNodes('resolve failed', err));
          }
        } }, el('label', {}, otherRadio, ' ', other), reason, el('div', {}, button), status);
        out.push(el('div', { class: 'conflict', id: 'conflict-' + f.field, 'data-field': f.field },
          el('h3', {}, 'field ', user(f.field), ': ' + sibs.length + ' values'),
          el('div', { class: 'siblings' }, sibs.map((s, i) => siblingCard(s, i, group))),
          form));
      });
    }
    const resolved = cs.resolved || [];
    if (resolved.length > 0) {
      out.push(el('h2', {}, 'Resolved'), el('ul', { id: 'resolved' }, resolved.flatMap((f) => (f.siblings || []).map((s) =>
        el('li', { 'data-field': f.field },
          'field ', user(f.field), ' resolved to ', user(shownValue(s.value, s.value_base64)), ' by ', officerOf(s.officer, s.bureau),
          ', device ', device(s.author), ', at ', el('span', { class: 'mono' }, s.hlc),
          s.resolution && s.resolution.reason ? [' — reason: ', user(s.resolution.reason, 'reason')] : '')))));
    }
    return out;
  }

  function opNodes(op) {
    const v = user(shownValue(op.value, op.value_base64));
    let nodes;
    switch ((op.kind || '').replace(/-/g, '_')) {
      case 'put': nodes = ['put ', user(op.field), ' = ', v]; break;
      case 'set_add': nodes = ['set add ', user(op.field), ' ', v]; break;
      case 'set_remove': nodes = ['set remove ', user(op.field), ' ', v]; break;
      case 'note_add': nodes = ['note ', v]; break;
      case 'note_remove': nodes = ['note removed ', user(op.field)]; break;
      case 'delete': nodes = ['delete record']; break;
      case 'resolve': nodes = ['resolve ', user(op.field), ' = ', v]; break;
      default: nodes = [op.kind + ' ', user(op.field), ' ', v];
    }
    if (op.resolves && op.resolves.length) nodes.push(el('span', { class: 'muted' }, ' (replaces ' + op.resolves.join(', ') + ')'));
    if (op.reason) nodes.push(' reason: ', user(op.reason, 'reason'));
    return el('div', { class: 'op', 'data-kind': op.kind }, nodes);
  }

  function historySection(hist) {
    const out = [el('h2', {}, 'History')];
    if (hist.length === 0) {
      out.push(el('p', { class: 'muted' }, 'no history'));
      return out;
    }
    out.push(el('table', { id: 'history' },
      el('tr', {}, el('th', {}, 'time'), el('th', {}, 'officer'), el('th', {}, 'device'), el('th', {}, 'seq'), el('th', {}, 'signature'), el('th', {}, 'change')),
      hist.map((e) => el('tr', { 'data-author': e.author, 'data-seq': String(e.seq) },
        el('td', { class: 'mono', title: e.hlc }, e.time || e.hlc),
        el('td', { dir: 'auto' }, officerOf(e.officer, e.bureau)),
        el('td', {}, device(e.author)),
        el('td', {}, String(e.seq)),
        el('td', { class: e.signature === 'valid' ? 'sig-valid' : 'sig-invalid' }, e.signature, e.error ? [': ', user(e.error)] : ''),
        el('td', {}, (e.ops || []).length === 0 && e.outcome && e.outcome !== 'applied' ?
          el('span', { class: 'muted' }, '(' + e.outcome + ': changed nothing)') : (e.ops || []).map(opNodes))))));
    return out;
  }

  // ---- live updates ------------------------------------------------------------

  // watch opens the event stream for the space on screen ("" for all).
  function watch(space) {
    if (state.events && state.eventsSpace === space) return;
    if (state.events) state.events.close();
    state.eventsSpace = space;
    let url = '/api/events?token=' + encodeURIComponent(token);
    if (space) url += '&space=' + encodeURIComponent(space);
    const es = new EventSource(url);
    state.events = es;
    es.addEventListener('ready', () => { setLive(true, 'live'); });
    es.addEventListener('changed', () => {
      setLive(true, 'live');
      onChanged();
    });
    es.addEventListener('agent-error', (ev) => {
      let msg = '';
      try { msg = JSON.parse(ev.data).message; } catch (e) { msg = ev.data; }
      setLive(false, 'agent: ' + msg);
    });
    es.onerror = () => { setLive(false, 'reconnecting…'); };
  }

  function setLive(on, text) {
    liveBox.className = 'live ' + (on ? 'on' : 'off');
    liveBox.textContent = text;
  }

  // onChanged re-renders the view, unless the officer is typing in it (a
  // resolve reason, another value): then it offers a refresh instead.
  function onChanged() {
    const typing = Array.from(view.querySelectorAll('textarea, input[type=text]')).some((x) => x.value !== '') ||
      !!view.querySelector('.resolve-form input[type=radio]:checked, .conflict input[type=radio]:checked') ||
      (document.activeElement && view.contains(document.activeElement) && /^(TEXTAREA|INPUT|SELECT)$/.test(document.activeElement.tagName) &&
        document.activeElement.id !== 'search-q');
    if (typing) {
      showNotice('Changes arrived from the agent. ', el('button', { type: 'button', id: 'refresh', onclick: () => { clearNotice(); render(); } }, 'Refresh'));
      return;
    }
    render();
  }

  // ---- start -------------------------------------------------------------------

  view.addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-goto]');
    if (!a) return;
    ev.preventDefault();
    const target = document.getElementById(a.dataset.goto);
    if (target) target.scrollIntoView();
  });
  window.addEventListener('hashchange', () => { clearNotice(); render(); });
  call('status').then((st) => {
    document.getElementById('device').replaceChildren('device ', device(st.device.id), ' · ', user(st.device.bureau), ' · ', st.device.role);
  }).catch(() => {});
  render();
})();
