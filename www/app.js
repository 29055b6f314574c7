// edge-registry web UI: plain ES modules, no build step. Hash routes, so the registry serves it
// as static files:
//   #/                              repositories (the catalog, with a filter)
//   #/repo/<name>[?last=<tag>]      a repository's tags, a page at a time
//   #/repo/<name>/manifest/<ref>    a manifest (by tag or digest): blobs, platforms, referrers
// `?n=<count>` on the page's own URL (before the #) sets the page size (tests use small pages).

import * as api from './api.js';

const pageParams = new URLSearchParams(location.search);
const TAGS_PER_PAGE = intParam('n', 20);
const CATALOG_BATCH = intParam('n', 100);
/** Repositories loaded before the list asks to "load more" instead of following `Link` itself. */
const CATALOG_AUTO_LIMIT = 1000;
/** Manifests and configs fetched at once. */
const CONCURRENCY = 4;
const HOST = location.host;

const app = document.getElementById('app');
const crumbs = document.getElementById('crumbs');
const account = document.getElementById('account');
document.getElementById('host').textContent = HOST;

function intParam(key, fallback) {
  const v = parseInt(pageParams.get(key) || '', 10);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

// ---- DOM helpers ------------------------------------------------------------------------------

/** An element: `h('a', { href, class, onclick, dataset }, ...children)`. Text is never HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

/** Replaces `el`'s children (skipping null, undefined and false, like `h`). */
function put(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  repo: 'M4 7.5 12 3l8 4.5v9L12 21l-8-4.5v-9Zm0 0 8 4.5m0 0 8-4.5M12 12v9',
  search: 'M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14Zm9 16-4-4',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  check: 'M5 12.5 10 17l9-10',
  chevron: 'm9 6 6 6-6 6',
  alert: 'M12 8v5m0 3.5v.5M10.3 3.9 2.6 17.5A2 2 0 0 0 4.3 20.5h15.4a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z',
  box: 'M3 7.5 12 3l9 4.5v9L12 21l-9-4.5v-9Z M3 7.5l9 4.5 9-4.5 M12 12v9',
};

function icon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

// ---- formatting -------------------------------------------------------------------------------

/** Bytes in decimal units, as `docker images` shows them: `512 B`, `3.1 MB`. */
export function humanSize(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '—';
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes / 1000;
  let i = 0;
  while (v >= 999.95 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function sizeEl(bytes) {
  return h('span', { class: 'size', title: `${bytes.toLocaleString('en-US')} bytes`, dataset: { bytes: String(bytes) } }, humanSize(bytes));
}

function shortDigest(d) {
  const [alg, hex] = String(d).split(':');
  return hex ? `${alg}:${hex.slice(0, 12)}` : String(d);
}

/** `2024-05-01 12:30 UTC`, the same in every time zone; the input when it is not a date. */
function formatDate(s) {
  const t = Date.parse(s);
  if (!s || Number.isNaN(t)) return s || '—';
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

function dateEl(s) {
  if (!s) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: s, title: s, class: 'created' }, formatDate(s));
}

function plural(n, one, many = one + 's') {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

function platformOf(p) {
  if (!p || !p.os) return '';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

const CREATED = 'org.opencontainers.image.created';

/** What a manifest is, and what the tag list and the manifest view say about it. */
function describe(m, mediaType) {
  const type = mediaType || m.mediaType || '';
  if (Array.isArray(m.manifests) || type === api.OCI_INDEX || type === api.DOCKER_LIST) {
    const children = m.manifests || [];
    const platforms = children.map((c) => platformOf(c.platform)).filter((p) => p && p !== 'unknown/unknown');
    return {
      kind: 'index',
      label: type === api.DOCKER_LIST ? 'Docker list' : 'Index',
      children,
      platforms,
      artifactType: m.artifactType,
      created: m.annotations && m.annotations[CREATED],
    };
  }
  const layers = Array.isArray(m.layers) ? m.layers : [];
  const config = m.config || null;
  const size = (config ? config.size || 0 : 0) + layers.reduce((s, l) => s + (l.size || 0), 0);
  const configType = config && config.mediaType;
  const isImage = !m.artifactType && (configType === api.OCI_CONFIG || configType === api.DOCKER_CONFIG);
  return {
    kind: isImage ? 'image' : 'artifact',
    label: isImage ? (type === api.DOCKER_MANIFEST ? 'Docker image' : 'Image') : 'Artifact',
    layers,
    config,
    size,
    artifactType: m.artifactType || (isImage ? undefined : configType),
    created: m.annotations && m.annotations[CREATED],
  };
}

function kindBadge(d) {
  return h('span', { class: `badge badge-${d.kind}` }, d.label);
}

// ---- shared pieces ----------------------------------------------------------------------------

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back to a selection
  }
  const ta = h('textarea', { class: 'offscreen', readonly: true });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

function copyButton(text, label = 'Copy') {
  const span = h('span', {}, label);
  const btn = h('button', { type: 'button', class: 'btn btn-copy', title: `Copy ${text}`, dataset: { copy: text } }, icon('copy'), span);
  btn.addEventListener('click', async () => {
    const ok = await copyText(text);
    span.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    btn.classList.toggle('copied', ok);
    clearTimeout(btn._t);
    btn._t = setTimeout(() => {
      span.textContent = label;
      btn.classList.remove('copied');
    }, 1600);
  });
  return btn;
}

/** A command line with a copy button. */
function commandLine(cmd, cls = '') {
  return h('div', { class: `command ${cls}` }, h('code', {}, h('span', { class: 'prompt' }, '$ '), cmd), copyButton(cmd));
}

function errorBox(e, { back = true } = {}) {
  const status = e.status ? `HTTP ${e.status}` : '';
  const detail = e.detail !== undefined && e.detail !== null ? JSON.stringify(e.detail, null, 2) : '';
  return h(
    'div',
    { class: 'error', role: 'alert' },
    icon('alert', 'icon icon-lg'),
    h(
      'div',
      { class: 'error-body' },
      h('div', { class: 'error-title' }, h('code', { class: 'error-code' }, e.code || 'ERROR'), status && h('span', { class: 'muted' }, status)),
      h('p', { class: 'error-message' }, e.message || String(e)),
      detail && h('pre', { class: 'error-detail' }, detail),
      e.url && h('p', { class: 'muted small' }, 'GET ', h('code', {}, e.url)),
      back && h('p', {}, h('a', { href: '#/' }, '← All repositories')),
    ),
  );
}

function inlineError(e) {
  return h('span', { class: 'inline-error', title: e.detail ? JSON.stringify(e.detail) : '' }, `${e.code || 'ERROR'}: ${e.message}`);
}

function setCrumbs(items) {
  put(crumbs,
    ...items.flatMap(([text, href], i) => [
      i > 0 ? h('span', { class: 'crumb-sep' }, '/') : null,
      href ? h('a', { href }, text) : h('span', { class: 'crumb-current' }, text),
    ]),
  );
  document.title = items.length > 1 ? `${items.slice(1).map((i) => i[0]).join(' ')} · edge-registry` : 'edge-registry';
}

function repoHref(name) {
  // A trailing `/` keeps a name like `a/manifest/b` from reading as a manifest route.
  return `#/repo/${name}${/\/manifest\/[^/]+$/.test(name) ? '/' : ''}`;
}

function manifestHref(name, ref) {
  return `#/repo/${name}/manifest/${ref}`;
}

/** Runs `fn` over `items`, `limit` at a time. */
async function pool(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function isAbort(e) {
  return e && e.name === 'AbortError';
}

function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

function thead(headers) {
  return h('thead', {}, h('tr', {}, headers.map((t) => h('th', { class: t === 'Size' ? 'num' : null }, t))));
}

function table(cls, headers, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { class: cls }, thead(headers), h('tbody', {}, rows)),
  );
}

// ---- sizes (GET /v2/_sizes) and deleting ----------------------------------------------------

let sizesCache = null;

/**
 * The registry's sizes and the delete rights (`api.sizes`), fetched once and shared by the
 * views until something is deleted; null when the registry does not say.
 */
function loadSizes() {
  if (!sizesCache) sizesCache = api.sizes().catch(() => null);
  return sizesCache;
}

async function repoSizes(name) {
  const all = await loadSizes();
  return (all && all.repositories.find((r) => r.name === name)) || null;
}

/** `12.3 MB (10.1 MB unique, 2.2 MB shared)`, with the exact figures as data attributes. */
function repoSizeEl(r) {
  return h(
    'span',
    { class: 'repo-size', dataset: { unique: String(r.unique), shared: String(r.shared) } },
    sizeEl(r.unique + r.shared),
    h('span', { class: 'muted small' }, ` (${humanSize(r.unique)} unique, ${humanSize(r.shared)} shared)`),
  );
}

/** Asks, then deletes `reference` (a tag, or a manifest by digest); true when it went. */
async function confirmDelete(name, reference, question, errorSlot) {
  if (!window.confirm(question)) return false;
  try {
    await api.deleteManifest(name, reference);
  } catch (e) {
    put(errorSlot, inlineError(e));
    return false;
  }
  sizesCache = null;
  return true;
}

// ---- #/ : repositories ------------------------------------------------------------------------

/** A badge for a repository cached from a mirror's upstream (its prefix is a mirror's). */
function mirrorBadge(mirrors, name) {
  const prefix = Object.keys(mirrors).find((p) => name.startsWith(`${p}/`));
  if (!prefix) return null;
  return h('span', { class: 'badge badge-mirror', title: `Cached from ${mirrors[prefix]}` }, `mirror of ${mirrors[prefix]}`);
}

async function reposView(route, signal) {
  setCrumbs([['Repositories']]);
  const state = { names: [], next: api.catalogUrl(CATALOG_BATCH), loading: true, error: null, mirrors: {} };
  const input = h('input', {
    type: 'search',
    id: 'filter',
    class: 'filter',
    placeholder: 'Filter repositories…',
    'aria-label': 'Filter repositories',
    autocomplete: 'off',
    spellcheck: 'false',
    value: route.q.get('q') || '',
  });
  const count = h('span', { class: 'count', id: 'repo-count' });
  const list = h('ul', { class: 'repo-list', id: 'repo-list' });
  const footer = h('div', { class: 'list-footer' });
  const toolbar = h('div', { class: 'toolbar' }, h('label', { class: 'search' }, icon('search'), input), count);
  const body = h('div', { class: 'card card-flush' }, toolbar, list, footer);
  const totalEl = h('p', { class: 'subtitle', id: 'registry-total', hidden: true });
  put(app, h('div', { class: 'page-head' }, h('h1', {}, 'Repositories'), totalEl), body);

  input.addEventListener('input', () => {
    const q = input.value.trim();
    history.replaceState(null, '', `${location.pathname}${location.search}#/${q ? `?q=${encodeURIComponent(q)}` : ''}`);
    draw();
  });

  function draw() {
    const q = input.value.trim().toLowerCase();
    const shown = q ? state.names.filter((n) => n.toLowerCase().includes(q)) : state.names;
    const total = plural(state.names.length, 'repository', 'repositories') + (state.next ? '+' : '');
    count.textContent = q ? `${shown.length.toLocaleString('en-US')} of ${total}` : total;
    if (!state.loading && !state.error && state.names.length === 0 && !state.next) {
      body.replaceWith(emptyState());
      return;
    }
    put(list,
      ...shown.map((name) => {
        const slash = name.lastIndexOf('/');
        return h(
          'li',
          { dataset: { repo: name } },
          h(
            'a',
            { href: repoHref(name), class: 'repo-row' },
            icon('repo', 'icon repo-icon'),
            h('span', { class: 'repo-name' }, slash >= 0 && h('span', { class: 'ns' }, name.slice(0, slash + 1)), name.slice(slash + 1)),
            mirrorBadge(state.mirrors, name),
            state.sizes && state.sizes.has(name) && repoSizeEl(state.sizes.get(name)),
            icon('chevron', 'icon chevron'),
          ),
        );
      }),
    );
    if (q && shown.length === 0 && !state.loading) {
      list.append(h('li', { class: 'no-match' }, `No repositories match “${input.value.trim()}”.`));
    }
    put(footer,
      state.loading &&
        h(
          'span',
          { class: 'loading' },
          state.names.length ? `Loading… ${plural(state.names.length, 'repository', 'repositories')} so far` : 'Loading repositories…',
        ),
      state.error ? errorBox(state.error, { back: false }) : null,
      !state.loading && state.next
        ? h(
            'button',
            { type: 'button', class: 'btn', id: 'load-more', onclick: () => load(state.names.length + CATALOG_AUTO_LIMIT) },
            'Load more repositories',
          )
        : null,
    );
    footer.hidden = !footer.firstChild;
  }

  async function load(limit) {
    state.loading = true;
    state.error = null;
    draw();
    try {
      while (state.next && state.names.length < limit) {
        const page = await api.catalogPage(state.next, signal);
        state.names.push(...page.repositories);
        state.mirrors = page.mirrors;
        // A registry that keeps answering the same page would loop forever.
        state.next = page.repositories.length ? page.next : null;
        draw();
      }
    } catch (e) {
      if (isAbort(e)) return;
      if (e.status === 401) {
        showSignIn(e);
        return;
      }
      state.error = e;
    }
    state.loading = false;
    draw();
  }

  await load(CATALOG_AUTO_LIMIT);
  const sizes = await loadSizes();
  if (sizes && !signal.aborted) {
    state.sizes = new Map(sizes.repositories.map((r) => [r.name, r]));
    put(totalEl, 'Total stored: ', h('span', { id: 'total-stored' }, sizeEl(sizes.total)), ` in ${plural(sizes.blobs, 'blob')}`, sizes.partial ? ' (so far)' : '');
    totalEl.hidden = false;
    draw();
  }
}

function emptyState() {
  const http = location.protocol === 'http:';
  return h(
    'div',
    { class: 'card empty', id: 'empty' },
    icon('box', 'icon empty-icon'),
    h('h2', {}, 'No repositories yet'),
    h('p', { class: 'muted' }, 'Push an image to this registry and it shows up here.'),
    h(
      'div',
      { class: 'commands' },
      api.signedInAs() && commandLine(`docker login ${HOST}`),
      commandLine(`docker tag alpine:latest ${HOST}/alpine:latest`),
      commandLine(`docker push ${HOST}/alpine:latest`),
    ),
    h('p', { class: 'muted small' }, 'Or with podman or oras:'),
    h(
      'div',
      { class: 'commands' },
      commandLine(`podman push ${http ? '--tls-verify=false ' : ''}alpine ${HOST}/alpine:latest`),
      commandLine(`oras push ${http ? '--plain-http ' : ''}${HOST}/notes:v1 readme.md`),
    ),
    http &&
      h(
        'p',
        { class: 'note small' },
        'This registry speaks plain HTTP. Docker trusts localhost and 127.0.0.1 as insecure registries by default; for another host, add ',
        h('code', {}, `"${HOST}"`),
        ' to ',
        h('code', {}, 'insecure-registries'),
        ' in /etc/docker/daemon.json.',
      ),
  );
}

// ---- #/repo/<name> : tags ---------------------------------------------------------------------

/** Where each tag page started, to offer "Previous": key `name\nlast` → { prev, start }. */
const pageMemory = new Map();

async function tagsView(route, signal) {
  const name = route.name;
  const last = route.q.get('last') || '';
  setCrumbs([['Repositories', '#/'], [name]]);
  const remembered = pageMemory.get(`${name}\n${last}`);
  const start = last ? remembered && remembered.start : 0;

  const tbody = h('tbody');
  const sizesAsked = repoSizes(name);
  const pager = h('div', { class: 'pager' });
  const content = h('div', { class: 'card card-flush' }, h('div', { class: 'loading pad' }, 'Loading tags…'));
  put(app,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { class: 'repo-title' }, icon('repo', 'icon icon-title'), name),
      h('p', { class: 'subtitle' }, h('code', {}, `${HOST}/${name}`), copyButton(`${HOST}/${name}`)),
    ),
    content,
  );

  const { tags, next } = await api.tagsPage(name, TAGS_PER_PAGE, last, signal);
  const sizes = await sizesAsked;
  const canDelete = !!(sizes && sizes.delete);
  if (sizes) app.querySelector('.page-head').append(h('p', { class: 'subtitle', id: 'repo-size' }, 'Stored: ', repoSizeEl(sizes)));
  if (tags.length === 0) {
    const none = last ? 'No more tags.' : 'This repository has no tags. Its manifests can still be pulled by digest.';
    put(content, h('div', { class: 'empty-inline' }, none));
    if (last) content.append(pagerEl());
    return;
  }
  const headers = ['Tag', 'Type', 'Platforms', 'Size', 'Created', ...(canDelete ? [''] : [])];
  put(content,
    h('div', { class: 'table-wrap' }, h('table', { class: 'tags', id: 'tags' }, thead(headers), tbody)),
    pagerEl(),
  );

  function pagerEl() {
    const from = start === undefined ? null : start + 1;
    const text =
      from === null
        ? `${plural(tags.length, 'tag')} after “${last}”`
        : tags.length
          ? `Tags ${from.toLocaleString('en-US')}–${(from + tags.length - 1).toLocaleString('en-US')}`
          : '';
    const prevHref = last ? (remembered && remembered.prev ? `${repoHref(name)}?last=${encodeURIComponent(remembered.prev)}` : repoHref(name)) : null;
    put(pager,
      h('span', { class: 'muted', id: 'page-info' }, text),
      h(
        'span',
        { class: 'pager-buttons' },
        prevHref
          ? h('a', { class: 'btn', id: 'prev-page', href: prevHref }, remembered ? '← Previous' : '← First page')
          : h('span', { class: 'btn disabled', 'aria-disabled': 'true' }, '← Previous'),
        next
          ? h('a', {
              class: 'btn',
              id: 'next-page',
              href: `${repoHref(name)}?last=${encodeURIComponent(next)}`,
              onclick: () => pageMemory.set(`${name}\n${next}`, { prev: last, start: start === undefined ? undefined : start + tags.length }),
            }, 'Next →')
          : h('span', { class: 'btn disabled', 'aria-disabled': 'true' }, 'Next →'),
      ),
    );
    return pager;
  }

  const rows = tags.map((tag) => {
    const cells = {
      digest: h('span', { class: 'digest muted' }, 'loading…'),
      type: h('td', { class: 'type' }),
      platforms: h('td', { class: 'platforms' }),
      size: h('td', { class: 'num' }),
      created: h('td', { class: 'nowrap' }),
    };
    const tr = h(
      'tr',
      { dataset: { tag } },
      h('td', { class: 'tag-cell' }, h('a', { href: manifestHref(name, tag), class: 'tag-name' }, tag), h('div', {}, cells.digest)),
      cells.type,
      cells.platforms,
      cells.size,
      cells.created,
    );
    if (canDelete) {
      const slot = h('div');
      const question = `Delete the tag “${tag}” from ${name}?\n\nThe manifest stays, and can still be pulled by digest.`;
      const button = h('button', { type: 'button', class: 'btn btn-danger delete-tag', title: `Delete the tag ${tag}` }, 'Delete');
      button.addEventListener('click', async () => {
        if (await confirmDelete(name, tag, question, slot)) tr.remove();
      });
      tr.append(h('td', { class: 'actions' }, button, slot));
    }
    tbody.append(tr);
    return { tag, tr, cells };
  });

  await pool(rows, CONCURRENCY, async (row) => {
    try {
      await fillTagRow(name, row, signal);
    } catch (e) {
      if (isAbort(e)) return;
      put(row.cells.digest, inlineError(e));
      row.cells.digest.classList.remove('muted');
    }
  });
}

async function fillTagRow(name, { tag, tr, cells }, signal) {
  const m = await api.manifest(name, tag, signal);
  const d = describe(m.manifest, m.mediaType);
  tr.dataset.digest = m.digest;
  tr.dataset.kind = d.kind;
  put(cells.digest, h('code', { title: m.digest }, shortDigest(m.digest)));
  put(
    cells.type,
    kindBadge(d),
    h('div', { class: 'media-type', title: m.mediaType }, m.mediaType),
    d.artifactType && h('div', { class: 'media-type', title: d.artifactType }, d.artifactType),
  );
  put(cells.created, dateEl(d.created));
  if (d.kind === 'index') {
    put(cells.platforms, ...chips(d.platforms));
    const title = 'An index: each platform has its own size (open it to see them)';
    put(cells.size, h('span', { class: 'muted index-size', title }, `index of ${plural(d.children.length, 'manifest')}`));
    return;
  }
  put(cells.size, sizeEl(d.size));
  if (d.kind !== 'image' || !d.config) {
    put(cells.platforms, h('span', { class: 'muted' }, '—'));
    return;
  }
  const config = await api.blobJson(name, d.config.digest, signal);
  put(cells.platforms, ...chips([platformOf({ os: config.os, architecture: config.architecture, variant: config.variant })].filter(Boolean)));
  if (config.created) put(cells.created, dateEl(config.created));
}

function chips(platforms) {
  if (!platforms.length) return [h('span', { class: 'muted' }, '—')];
  return platforms.map((p) => h('span', { class: 'chip' }, p));
}

// ---- #/repo/<name>/manifest/<ref> -------------------------------------------------------------

async function manifestView(route, signal) {
  const { name, ref } = route;
  const byDigest = ref.includes(':');
  setCrumbs([['Repositories', '#/'], [name, repoHref(name)], [byDigest ? shortDigest(ref) : ref]]);
  const pullRef = `${HOST}/${name}${byDigest ? '@' : ':'}${ref}`;
  const title = h(
    'h1',
    { class: 'repo-title' },
    h('span', {}, h('span', { class: 'title-name' }, name), h('span', { class: 'title-ref' }, byDigest ? `@${shortDigest(ref)}` : `:${ref}`)),
  );
  const head = h('div', { class: 'page-head' }, title);
  const pull = h('div', { class: 'card pull' }, h('h2', {}, 'Pull'), commandLine(`docker pull ${pullRef}`, 'pull-command'));
  const loading = h('div', { class: 'card loading pad' }, 'Loading manifest…');
  put(app, head, pull, loading);

  const sizesAsked = repoSizes(name);
  const m = await api.manifest(name, ref, signal);
  const d = describe(m.manifest, m.mediaType);
  title.append(kindBadge(d));
  const sizes = await sizesAsked;
  if (sizes && sizes.delete && m.digest) {
    const slot = h('div');
    const question =
      `Delete the manifest ${m.digest} from ${name}?\n\nEvery tag that points at it goes too. ` +
      'Its blobs are removed by the next garbage collection, unless another manifest uses them.';
    const button = h('button', { type: 'button', class: 'btn btn-danger', id: 'delete-manifest' }, 'Delete manifest');
    button.addEventListener('click', async () => {
      if (await confirmDelete(name, m.digest, question, slot)) location.hash = repoHref(name);
    });
    head.append(h('div', { class: 'head-actions' }, button, slot));
  }
  if (!byDigest && m.digest) pull.append(commandLine(`docker pull ${HOST}/${name}@${m.digest}`, 'pull-digest'));
  if (d.kind === 'artifact') {
    const plain = location.protocol === 'http:' ? '--plain-http ' : '';
    pull.append(commandLine(`oras pull ${plain}${HOST}/${name}@${m.digest || ref}`, 'pull-oras'));
  }

  const summary = h('dl', { class: 'summary' });
  const add = (label, ...value) => {
    const dt = h('dt', {}, label);
    const dd = h('dd', {}, ...value);
    summary.append(dt, dd);
    return { dt, dd };
  };
  /** A row filled in later (from the config blob), hidden until then. */
  const slot = (label) => {
    const s = add(label);
    s.dt.hidden = s.dd.hidden = true;
    s.fill = (...value) => {
      put(s.dd, ...value);
      s.dt.hidden = s.dd.hidden = false;
    };
    return s;
  };
  add('Digest', h('code', { class: 'digest-full', id: 'manifest-digest' }, m.digest || 'unknown'), m.digest && copyButton(m.digest));
  add('Media type', h('code', {}, m.mediaType || 'unknown'));
  if (d.artifactType) add('Artifact type', h('code', {}, d.artifactType));
  add('Manifest size', sizeEl(m.size));
  if (d.kind !== 'index') {
    const parts = `config + ${plural(d.layers.length, d.kind === 'image' ? 'layer' : 'blob')}, compressed`;
    add('Total size', h('span', { id: 'total-size' }, sizeEl(d.size)), h('span', { class: 'muted small' }, parts));
  }
  const created = slot('Created');
  if (d.created) created.fill(dateEl(d.created));
  const platform = slot('Platform');
  const subject = m.manifest.subject;
  if (subject && subject.digest) {
    add(
      'Subject',
      h('a', { href: manifestHref(name, subject.digest) }, h('code', {}, subject.digest)),
      subject.mediaType && h('span', { class: 'muted small' }, subject.mediaType),
    );
  }
  const annotations = Object.entries(m.manifest.annotations || {});
  if (annotations.length) add('Annotations', annotationList(annotations));

  const parts = [h('section', { class: 'card' }, h('h2', {}, 'Overview'), summary)];
  if (d.kind === 'index') parts.push(platformsSection(name, d, signal));
  else parts.push(blobsSection(name, d));
  const configSlot = h('div');
  if (d.kind === 'image' && d.config) parts.push(configSlot);
  const referrersSlot = section('Referrers', h('p', { class: 'loading' }, 'Loading referrers…'));
  referrersSlot.id = 'referrers';
  parts.push(referrersSlot);
  parts.push(h('details', { class: 'card raw' }, h('summary', {}, 'Raw manifest'), h('pre', {}, prettyJson(m.raw))));
  loading.replaceWith(...parts);

  const jobs = [];
  if (d.kind === 'image' && d.config) {
    jobs.push(
      api
        .blobJson(name, d.config.digest, signal)
        .then((config) => {
          configSlot.replaceWith(configSection(config));
          if (config.created && !d.created) created.fill(dateEl(config.created));
          const p = platformOf({ os: config.os, architecture: config.architecture, variant: config.variant });
          if (p) platform.fill(h('span', { class: 'chip' }, p));
        })
        .catch((e) => {
          if (!isAbort(e)) configSlot.replaceWith(section('Image config', errorBox(e, { back: false })));
        }),
    );
  }
  if (m.digest) {
    jobs.push(
      api
        .referrers(name, m.digest, signal)
        .then((list) => referrersSlot.replaceWith(referrersSection(name, list)))
        .catch((e) => {
          if (!isAbort(e)) put(referrersSlot, h('h2', {}, 'Referrers'), errorBox(e, { back: false }));
        }),
    );
  } else {
    put(referrersSlot, h('h2', {}, 'Referrers'), h('p', { class: 'muted' }, 'The registry did not say this manifest’s digest.'));
  }
  await Promise.all(jobs);
}

function prettyJson(raw) {
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

function annotationList(entries) {
  return h(
    'ul',
    { class: 'kv' },
    entries.map(([k, v]) => h('li', {}, h('code', { class: 'k' }, k), ' ', h('span', { class: 'v' }, String(v)))),
  );
}

function blobsSection(name, d) {
  const rows = [];
  if (d.config) rows.push(blobRow(name, 'config', d.config));
  d.layers.forEach((l, i) => rows.push(blobRow(name, `${d.kind === 'image' ? 'layer' : 'blob'} ${i + 1}`, l)));
  rows.push(h('tr', { class: 'total' }, h('td', { colspan: '3' }, 'Total'), h('td', { class: 'num' }, sizeEl(d.size))));
  const title = d.kind === 'image' ? `Layers (${d.layers.length})` : `Blobs (${d.layers.length})`;
  return section(title, table('blobs', ['Blob', 'Media type', 'Digest', 'Size'], rows));
}

function blobRow(name, role, desc) {
  return h(
    'tr',
    { dataset: { digest: desc.digest || '' }, class: role === 'config' ? 'config-row' : 'layer-row' },
    h('td', { class: 'role' }, role),
    h('td', {}, h('code', { class: 'media-type' }, desc.mediaType || '')),
    h(
      'td',
      {},
      h(
        'a',
        {
          href: api.blobUrl(name, desc.digest),
          class: 'digest-link',
          title: desc.digest,
          target: '_blank',
          rel: 'noopener',
          // A plain link carries no credentials: when signed in, fetch the blob with them.
          onclick: (e) => {
            if (!api.signedInAs()) return;
            e.preventDefault();
            api.downloadBlob(name, desc.digest).catch((err) => e.target.closest('td').append(' ', inlineError(err)));
          },
        },
        h('code', {}, shortDigest(desc.digest)),
      ),
    ),
    h('td', { class: 'num' }, sizeEl(desc.size || 0)),
  );
}

function platformsSection(name, d, signal) {
  const rows = d.children.map((c) => {
    const sizeCell = h('td', { class: 'num' }, h('span', { class: 'muted' }, '…'));
    const p = platformOf(c.platform) || 'unknown';
    const tr = h(
      'tr',
      { dataset: { digest: c.digest || '', platform: p } },
      h('td', {}, h('span', { class: 'chip' }, p)),
      h('td', {}, h('code', { class: 'media-type' }, c.mediaType || '')),
      h('td', {}, h('a', { href: manifestHref(name, c.digest) }, h('code', { title: c.digest }, shortDigest(c.digest)))),
      sizeCell,
    );
    return { tr, c, sizeCell };
  });
  // Each platform's compressed size needs its manifest: one request per child, a few at a time.
  pool(rows, CONCURRENCY, async ({ c, sizeCell }) => {
    try {
      const child = await api.manifest(name, c.digest, signal);
      const cd = describe(child.manifest, child.mediaType);
      put(sizeCell, cd.kind === 'index' ? h('span', { class: 'muted' }, 'index') : sizeEl(cd.size));
    } catch (e) {
      if (!isAbort(e)) put(sizeCell, inlineError(e));
    }
  });
  return section(`Platforms (${d.children.length})`, table('platforms-table', ['Platform', 'Media type', 'Manifest', 'Size'], rows.map((r) => r.tr)));
}

function configSection(config) {
  const c = config.config || {};
  const summary = h('dl', { class: 'summary' });
  const add = (label, ...value) => summary.append(h('dt', {}, label), h('dd', {}, ...value));
  // Created and platform are in the overview.
  if (config.author) add('Author', config.author);
  if (c.Entrypoint) add('Entrypoint', h('code', {}, JSON.stringify(c.Entrypoint)));
  if (c.Cmd) add('Cmd', h('code', {}, JSON.stringify(c.Cmd)));
  if (c.WorkingDir) add('Working dir', h('code', {}, c.WorkingDir));
  if (c.User) add('User', h('code', {}, c.User));
  if (c.ExposedPorts) add('Ports', Object.keys(c.ExposedPorts).join(', '));
  if (Array.isArray(c.Env) && c.Env.length) add('Env', h('ul', { class: 'kv' }, c.Env.map((e) => h('li', {}, h('code', {}, e)))));
  if (c.Labels && Object.keys(c.Labels).length) add('Labels', annotationList(Object.entries(c.Labels)));
  const parts = [summary.childElementCount ? summary : h('p', { class: 'muted empty-inline' }, 'No runtime configuration.')];
  const history = Array.isArray(config.history) ? config.history : [];
  if (history.length) {
    parts.push(
      h(
        'details',
        { class: 'history' },
        h('summary', {}, `History (${plural(history.length, 'step')})`),
        table(
          'history-table',
          ['Created', 'Command'],
          history.map((s) =>
            h(
              'tr',
              { class: s.empty_layer ? 'empty-layer' : '' },
              h('td', { class: 'nowrap' }, dateEl(s.created)),
              h('td', {}, h('code', {}, s.created_by || s.comment || '')),
            ),
          ),
        ),
      ),
    );
  }
  return section('Image config', ...parts);
}

function referrersSection(name, list) {
  const el = section(`Referrers (${list.length})`);
  el.id = 'referrers';
  if (!list.length) {
    const none = 'Nothing refers to this manifest: no signatures, SBOMs or attestations were pushed for it.';
    el.append(h('p', { class: 'muted empty-inline', id: 'no-referrers' }, none));
    return el;
  }
  const rows = list.map((r) => {
    const ann = Object.entries(r.annotations || {}).filter(([k]) => k !== CREATED);
    return h(
      'tr',
      { dataset: { digest: r.digest || '', artifactType: r.artifactType || '' } },
      h(
        'td',
        {},
        h('span', { class: 'badge badge-artifact' }, referrerKind(r.artifactType)),
        h('div', { class: 'media-type' }, h('code', {}, r.artifactType || r.mediaType || '')),
      ),
      h('td', {}, h('a', { href: manifestHref(name, r.digest) }, h('code', { title: r.digest }, shortDigest(r.digest)))),
      h('td', { class: 'num' }, sizeEl(r.size || 0)),
      h('td', { class: 'nowrap' }, dateEl(r.annotations && r.annotations[CREATED])),
      h('td', {}, ann.length ? annotationList(ann) : h('span', { class: 'muted' }, '—')),
    );
  });
  el.append(table('referrers-table', ['Artifact type', 'Manifest', 'Size', 'Created', 'Annotations'], rows));
  return el;
}

/** A short name for well-known artifact types. */
function referrerKind(t = '') {
  if (/sig|signature|sigstore|notary|cosign/i.test(t)) return 'Signature';
  if (/spdx|cyclonedx|sbom|syft/i.test(t)) return 'SBOM';
  if (/in-toto|attestation|provenance|slsa|vex/i.test(t)) return 'Attestation';
  return 'Artifact';
}

// ---- signing in ---------------------------------------------------------------------------------

/** The top bar's account corner: who is signed in, or a way to sign in when the registry asks. */
async function drawAccount() {
  // Who is signed in decides what the sizes list and whether deleting is offered.
  sizesCache = null;
  const user = api.signedInAs();
  if (user) {
    put(
      account,
      h('span', { class: 'muted small' }, 'Signed in as '),
      h('strong', { class: 'account-user' }, user),
      h('button', { class: 'btn btn-small', type: 'button', id: 'sign-out', onclick: signOut }, 'Sign out'),
    );
    return;
  }
  put(account);
  if (await api.signInOffered()) {
    put(account, h('a', { class: 'btn btn-small', href: '#/sign-in', id: 'sign-in-link' }, 'Sign in'));
  }
}

function signOut() {
  api.signOut();
  drawAccount();
  render();
}

/** The registry answered 401: ask for credentials (forgotten already if they were refused). */
function showSignIn(e) {
  drawAccount();
  const why = e.message ? `${e.message[0].toUpperCase()}${e.message.slice(1)}. ` : '';
  signInView(`${why}Sign in with the user and password you use for docker login.`);
}

/** The sign-in form, shown when the registry answers 401 or asked for at #/sign-in. */
function signInView(reason) {
  setCrumbs([['Repositories', '#/'], ['Sign in']]);
  const message = h('p', { class: 'sign-in-error', role: 'alert' });
  const user = h('input', { id: 'sign-in-user', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { id: 'sign-in-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h(
    'form',
    {
      class: 'card pad sign-in',
      id: 'sign-in',
      onsubmit: async (e) => {
        e.preventDefault();
        put(message);
        try {
          await api.signIn(user.value, password.value);
        } catch (err) {
          put(message, inlineError(err));
          return;
        }
        await drawAccount();
        if (location.hash === '#/sign-in') location.hash = '#/';
        else render();
      },
    },
    h('h2', {}, 'Sign in'),
    h('p', { class: 'muted' }, reason || 'This registry needs credentials: the same user and password as for docker login.'),
    h('label', {}, 'User', user),
    h('label', {}, 'Password', password),
    message,
    h('button', { class: 'btn', type: 'submit' }, 'Sign in'),
  );
  put(app, form);
  user.focus();
}

// ---- router -----------------------------------------------------------------------------------

function parseHash() {
  let hash = location.hash.replace(/^#/, '');
  let query = '';
  const qi = hash.indexOf('?');
  if (qi >= 0) {
    query = hash.slice(qi + 1);
    hash = hash.slice(0, qi);
  }
  const q = new URLSearchParams(query);
  let path = hash.replace(/^\/+/, '');
  if (path === 'sign-in') return { view: 'sign-in', q };
  try {
    path = decodeURIComponent(path);
  } catch {
    // keep it as it is
  }
  if (path.startsWith('repo/')) {
    const rest = path.slice('repo/'.length);
    if (!rest.endsWith('/')) {
      const m = rest.match(/^(.+)\/manifest\/([^/]+)$/);
      if (m) return { view: 'manifest', name: m[1], ref: m[2], q };
    }
    const name = rest.replace(/\/+$/, '');
    if (name) return { view: 'tags', name, q };
  }
  return { view: 'repos', q };
}

let current = null;

async function render() {
  if (current) current.abort();
  const nav = new AbortController();
  current = nav;
  const route = parseHash();
  document.body.dataset.view = route.view;
  app.setAttribute('aria-busy', 'true');
  window.scrollTo(0, 0);
  try {
    if (route.view === 'sign-in') signInView();
    else if (route.view === 'manifest') await manifestView(route, nav.signal);
    else if (route.view === 'tags') await tagsView(route, nav.signal);
    else await reposView(route, nav.signal);
  } catch (e) {
    if (isAbort(e)) return;
    if (current !== nav) return;
    if (e.status === 401) showSignIn(e);
    else put(app, errorBox(e));
  } finally {
    if (current === nav) app.setAttribute('aria-busy', 'false');
  }
}

window.addEventListener('hashchange', render);
drawAccount();
document.addEventListener('keydown', (e) => {
  const filter = document.getElementById('filter');
  if (e.key === '/' && filter && document.activeElement !== filter && !/input|textarea/i.test(document.activeElement.tagName)) {
    e.preventDefault();
    filter.focus();
  }
});
render();
