// The registry's own Distribution API, and nothing else: relative URLs (the UI is served by the
// registry itself, at /), the signed-in user's credentials, and the spec's JSON errors.

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';

/** Every manifest type the UI can show, for the manifests endpoint's Accept header. */
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(', ');

/** An error answered by the registry (with its JSON error code and message), or a network error. */
export class RegistryError extends Error {
  constructor(status, code, message, detail, url) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.url = url;
  }
}

/** Request path under `/v2/`, relative to the page (never absolute, never another host). */
function v2(path) {
  return 'v2/' + path;
}

/** A path segment as it goes into a URL (a digest keeps its `:`). */
function seg(s) {
  return encodeURIComponent(s).replace(/%3A/gi, ':');
}

/** A name's path segments as they go into a URL. */
function namePath(name) {
  return name.split('/').map(seg).join('/');
}

// ---- signing in ----------------------------------------------------------------------------------
// When the registry needs credentials, the UI sends them as Basic credentials on every request.
// They live in this tab's sessionStorage only, and go nowhere but this origin.

const AUTH_KEY = 'edge-registry.credentials';

/** The signed-in user's name, or null. */
export function signedInAs() {
  try {
    return JSON.parse(sessionStorage.getItem(AUTH_KEY) || 'null')?.user || null;
  } catch {
    return null;
  }
}

function authHeaders() {
  try {
    const c = JSON.parse(sessionStorage.getItem(AUTH_KEY) || 'null');
    return c && c.basic ? { Authorization: `Basic ${c.basic}` } : {};
  } catch {
    return {};
  }
}

export function signOut() {
  sessionStorage.removeItem(AUTH_KEY);
}

/** Checks the credentials at `/v2/` and keeps them if the registry takes them. */
export async function signIn(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  const basic = btoa(String.fromCharCode(...bytes));
  const url = v2('');
  let res;
  try {
    res = await fetch(url, { headers: { Authorization: `Basic ${basic}` }, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new RegistryError(0, 'NETWORK', `could not reach the registry: ${e.message}`, undefined, url);
  }
  if (!res.ok) throw await errorOf(res, url);
  sessionStorage.setItem(AUTH_KEY, JSON.stringify({ user, basic }));
}

/** Whether the registry asks this visitor to sign in (its `/v2/` answers 401). */
export async function signInOffered() {
  try {
    const res = await fetch(v2(''), { headers: authHeaders(), cache: 'no-store', credentials: 'omit' });
    return res.status === 401;
  } catch {
    return false;
  }
}

/** A blob as a browser download, with the credentials a plain link would not carry. */
export async function downloadBlob(name, digest) {
  const res = await request(blobUrl(name, digest), { cache: 'default' });
  const href = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = href;
  a.download = digest.replace(':', '-');
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

async function request(url, { signal, accept, cache = 'no-cache', method = 'GET' } = {}) {
  const headers = authHeaders();
  if (accept) headers.Accept = accept;
  let res;
  try {
    res = await fetch(url, { method, headers, signal, cache, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new RegistryError(0, 'NETWORK', `could not reach the registry: ${e.message}`, undefined, url);
  }
  if (!res.ok) {
    // Credentials the registry no longer takes (rotated, removed): forget them.
    if (res.status === 401 && headers.Authorization) signOut();
    throw await errorOf(res, url);
  }
  return res;
}

/** The registry's `{"errors":[{code,message,detail}]}` body, or what can be said without it. */
async function errorOf(res, url) {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // no body
  }
  try {
    const body = JSON.parse(text);
    const e = body && Array.isArray(body.errors) && body.errors[0];
    if (e) return new RegistryError(res.status, e.code, e.message, e.detail, url);
  } catch {
    // not JSON
  }
  const message = text.trim().slice(0, 300) || res.statusText || 'request failed';
  return new RegistryError(res.status, `HTTP_${res.status}`, message, undefined, url);
}

/** The next page's URL from a `Link: <url>; rel="next"` header, kept on this origin, or null. */
export function nextLink(res) {
  const link = res.headers.get('Link');
  if (!link) return null;
  for (const part of link.split(',')) {
    const m = part.match(/<([^>]*)>\s*;(.*)$/);
    if (!m || !/rel="?next"?/.test(m[2])) continue;
    const u = new URL(m[1], location.href);
    if (u.origin === location.origin) return u.pathname + u.search;
    // A Link built from another public base URL: keep the same API path, on this origin.
    const at = u.pathname.indexOf('/v2/');
    return at >= 0 ? v2(u.pathname.slice(at + 4)) + u.search : null;
  }
  return null;
}

function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * One page of the catalog: `{ repositories, next, mirrors }` (`next`: URL of the following page;
 * `mirrors`: prefix → upstream URL, from a registry with mirrors).
 */
export async function catalogPage(url, signal) {
  const res = await request(url, { signal });
  const body = await res.json();
  return { repositories: body.repositories || [], next: nextLink(res), mirrors: body.mirrors || {} };
}

export function catalogUrl(n) {
  return withQuery(v2('_catalog'), { n });
}

/** One page of a repository's tags: `{ tags, next }`; `next` is the last tag if more follow. */
export async function tagsPage(name, n, last, signal) {
  const res = await request(withQuery(v2(`${namePath(name)}/tags/list`), { n, last }), { signal });
  const body = await res.json();
  const tags = body.tags || [];
  let next = null;
  const link = nextLink(res);
  if (link) next = new URL(link, location.href).searchParams.get('last') || tags[tags.length - 1] || null;
  return { tags, next };
}

/**
 * A manifest by tag or digest: `{ manifest, mediaType, digest, size, raw }`.
 * The digest is the registry's `Docker-Content-Digest` (or the reference, when it is a digest).
 */
export async function manifest(name, reference, signal) {
  const byDigest = reference.includes(':');
  const res = await request(v2(`${namePath(name)}/manifests/${seg(reference)}`), {
    signal,
    accept: MANIFEST_ACCEPT,
    cache: byDigest ? 'default' : 'no-cache',
  });
  const bytes = await res.arrayBuffer();
  const raw = new TextDecoder().decode(bytes);
  let m;
  try {
    m = JSON.parse(raw);
  } catch {
    throw new RegistryError(res.status, 'MANIFEST_INVALID', 'the manifest is not JSON', undefined, res.url);
  }
  const contentType = (res.headers.get('Content-Type') || '').split(';')[0].trim();
  return {
    manifest: m,
    mediaType: m.mediaType || contentType,
    digest: res.headers.get('Docker-Content-Digest') || (byDigest ? reference : ''),
    size: bytes.byteLength,
    raw,
  };
}

/** A blob parsed as JSON (an image config). */
export async function blobJson(name, digest, signal) {
  const res = await request(blobUrl(name, digest), { signal, cache: 'default' });
  return res.json();
}

export function blobUrl(name, digest) {
  return v2(`${namePath(name)}/blobs/${seg(digest)}`);
}

/** Every referrer of a manifest (following `Link` pages if the registry pages them). */
export async function referrers(name, digest, signal) {
  let url = v2(`${namePath(name)}/referrers/${seg(digest)}`);
  const all = [];
  for (let pages = 0; url && pages < 50; pages++) {
    const res = await request(url, { signal, accept: OCI_INDEX });
    const body = await res.json();
    all.push(...(body.manifests || []));
    url = nextLink(res);
  }
  return all;
}

/**
 * Each repository's size and the registry's total (`GET /v2/_sizes`, this registry's own
 * endpoint): `{ repositories: [{ name, manifests, unique, shared, delete }], total, blobs, partial }`.
 */
export async function sizes(signal) {
  const res = await request(v2('_sizes'), { signal });
  return res.json();
}

/** Deletes a tag (the manifest stays) or, by digest, a manifest and every tag on it. */
export async function deleteManifest(name, reference) {
  await request(v2(`${namePath(name)}/manifests/${seg(reference)}`), { method: 'DELETE' });
}
