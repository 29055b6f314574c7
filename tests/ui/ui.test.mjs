// The web UI in a real browser: Debian's chromium driven by playwright-core, against a registry
// that `cargo test --test ui` filled (tests/ui.rs). Run by that test as `node --test tests/ui/`
// with:
//   REGISTRY_URL        the registry with the fixtures (two repositories, see tests/ui.rs)
//   REGISTRY_EMPTY_URL  a registry with no repositories (the empty state)
//   UI_FIXTURE          JSON: the names, tags, digests and sizes the UI must show
//   UI_SCREENSHOTS=1    also save one screenshot per page to docs/screenshots/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.UI_SCREENSHOTS === '1' ? path.join(ROOT, 'docs/screenshots') : null;

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run this through \`cargo test --test ui\` (tests/ui.rs), which starts the registry and pushes the fixtures`);
  }
  return v;
}

const URL_ = required('REGISTRY_URL').replace(/\/$/, '');
const EMPTY_URL = required('REGISTRY_EMPTY_URL').replace(/\/$/, '');
const F = JSON.parse(required('UI_FIXTURE'));
const HOST = new URL(URL_).host;

if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  throw new Error(`playwright-core is missing: run \`npm install\` in ${ROOT} (${e.message})`);
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
];

/** The UI's size format (www/app.js humanSize): decimal units, one decimal. */
function humanSize(bytes) {
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
const short = (d) => d.slice(0, d.indexOf(':') + 13);
const utc = (iso) => new Date(iso).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';

let context;
let userDataDir;
/** Every request the pages made, and every problem they reported. */
const requests = [];
const problems = [];

before(async () => {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-registry-ui-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
    timezoneId: 'UTC',
    locale: 'en-US',
  });
  context.setDefaultTimeout(15_000);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL_ });
  context.on('request', (r) => requests.push({ url: r.url(), method: r.method(), headers: r.headers() }));
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await context?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A registry error the UI shows is a 404 in the console; anything else is a problem.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
}

async function newPage() {
  const page = await context.newPage();
  return page;
}

/**
 * Waits until the view finished loading (no spinner left, the view not busy), then checks that
 * no placeholder or broken value leaked into the page.
 */
async function settled(page) {
  await page.waitForFunction(
    () =>
      document.getElementById('app').getAttribute('aria-busy') === 'false' &&
      !document.querySelector('.loading') &&
      ![...document.querySelectorAll('td, .digest')].some((el) => el.textContent === '…' || el.textContent === 'loading…'),
  );
  const body = await page.evaluate(() => document.body.innerText);
  assert.doesNotMatch(body, /\b(null|undefined|NaN)\b|\[object /, `broken text on ${page.url()}`);
}

/** Checks the page settled clean, and with UI_SCREENSHOTS=1 saves it as docs/screenshots/<name>.png. */
async function shot(page, name) {
  await settled(page);
  if (!SHOTS) return;
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const text = (loc) => loc.textContent().then((t) => t.replace(/\s+/g, ' ').trim());

test('repository list shows both images, and the filter narrows it', async () => {
  const page = await newPage();
  await page.goto(`${URL_}/#/`);
  const webapp = page.locator(`#repo-list li[data-repo="${F.webapp.name}"]`);
  const cli = page.locator(`#repo-list li[data-repo="${F.cli.name}"]`);
  await webapp.waitFor();
  await cli.waitFor();
  assert.equal(await text(webapp.locator('.repo-name')), F.webapp.name);
  assert.equal(await webapp.locator('a').getAttribute('href'), `#/repo/${F.webapp.name}`);
  if (F.native) assert.equal(await text(page.locator('#repo-count')), '2 repositories');
  assert.equal(await text(page.locator('#host')), HOST);
  await shot(page, 'repositories');

  await page.fill('#filter', F.webapp.name.split('/')[1].toUpperCase());
  await cli.waitFor({ state: 'detached' });
  assert.equal(await webapp.count(), 1);
  assert.match(await text(page.locator('#repo-count')), /^1 of /);
  assert.match(page.url(), /#\/\?q=/, 'the filter is kept in the URL');

  await page.fill('#filter', 'no-such-repository-here');
  await page.locator('.no-match').waitFor();
  assert.equal(await text(page.locator('.no-match')), 'No repositories match “no-such-repository-here”.');
  assert.equal(await page.locator('#repo-list li[data-repo]').count(), 0);

  await page.fill('#filter', '');
  await cli.waitFor();
  assert.equal(await webapp.count(), 1);

  // Clicking a repository opens its tags.
  await webapp.locator('a').click();
  await page.locator(`#tags tr[data-tag="${F.webapp.tag}"]`).waitFor();
  assert.equal(new URL(page.url()).hash, `#/repo/${F.webapp.name}`);
  await page.close();
});

test('the catalog is read a page at a time, following Link', async () => {
  // Page size for two pages of whatever the registry holds (it may be shared with other tests).
  const all = (await (await fetch(`${URL_}/v2/_catalog`)).json()).repositories;
  assert.ok(all.includes(F.webapp.name) && all.includes(F.cli.name));
  const n = Math.ceil(all.length / 2);
  const page = await newPage();
  const start = requests.length;
  await page.goto(`${URL_}/?n=${n}#/`);
  await page.locator(`#repo-list li[data-repo="${F.cli.name}"]`).waitFor();
  await page.locator(`#repo-list li[data-repo="${F.webapp.name}"]`).waitFor();
  await settled(page);
  const catalog = requests.slice(start).filter((r) => new URL(r.url).pathname === '/v2/_catalog');
  assert.equal(catalog.length, 2, catalog.map((r) => r.url).join('\n'));
  assert.equal(new URL(catalog[0].url).search, `?n=${n}`);
  assert.equal(new URL(catalog[1].url).searchParams.get('last'), all[n - 1]);
  assert.equal(await page.locator('#repo-list li[data-repo]').count(), all.length);
  await page.close();
});

test('a tag page shows each tag with its digest, media type, size, created date and platforms', async () => {
  const page = await newPage();
  const start = requests.length;
  await page.goto(`${URL_}/#/repo/${F.webapp.name}`);
  const row = page.locator(`#tags tr[data-tag="${F.webapp.tag}"]`);
  await row.locator('.size').waitFor();
  await settled(page);
  assert.deepEqual(await page.locator('#tags tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.tag)), F.webapp.tags);

  assert.equal(await row.getAttribute('data-digest'), F.webapp.digest);
  const digest = row.locator('.tag-cell code');
  assert.equal(await text(digest), short(F.webapp.digest));
  assert.equal(await digest.getAttribute('title'), F.webapp.digest);
  assert.equal(await text(row.locator('.size')), humanSize(F.webapp.size));
  assert.equal(await row.locator('.size').getAttribute('data-bytes'), String(F.webapp.size));
  assert.equal(await text(row.locator('td.type .media-type')), F.webapp.mediaType);
  assert.equal(await text(row.locator('td.type .badge')), 'Image');
  assert.equal(await text(row.locator('time.created')), utc(F.webapp.created));
  assert.equal(await text(row.locator('.chip')), F.webapp.platform);
  // `latest` is the same image.
  assert.equal(await page.locator('#tags tr[data-tag="latest"]').getAttribute('data-digest'), F.webapp.digest);
  for (const o of F.webapp.others) {
    const r = page.locator(`#tags tr[data-tag="${o.version}"]`);
    assert.equal(await r.getAttribute('data-digest'), o.digest);
    assert.equal(await r.locator('.size').getAttribute('data-bytes'), String(o.size));
  }
  // The manifests were asked for with every manifest type in Accept.
  const manifests = requests.slice(start).filter((r) => r.url.includes('/manifests/'));
  assert.ok(manifests.length >= F.webapp.tags.length);
  for (const r of manifests) for (const t of MANIFEST_TYPES) assert.ok(r.headers.accept.includes(t), `Accept of ${r.url}: ${r.headers.accept}`);
  await shot(page, 'tags');

  // The index repository: platforms instead of one size; the Docker image says so.
  await page.goto(`${URL_}/#/repo/${F.cli.name}`);
  const idx = page.locator(`#tags tr[data-tag="${F.cli.tag}"]`);
  await idx.locator('.chip').first().waitFor();
  await settled(page);
  assert.equal(await idx.getAttribute('data-digest'), F.cli.digest);
  assert.equal(await text(idx.locator('td.type .badge')), 'Index');
  assert.equal(await text(idx.locator('td.type .media-type')), F.cli.mediaType);
  assert.deepEqual(await idx.locator('.chip').allTextContents(), F.cli.platforms);
  assert.match(await text(idx.locator('.index-size')), /^index of 2 manifests$/);
  const docker = page.locator(`#tags tr[data-tag="${F.cli.docker.tag}"]`);
  assert.equal(await docker.getAttribute('data-digest'), F.cli.docker.digest);
  assert.equal(await text(docker.locator('td.type .badge')), 'Docker image');
  assert.equal(await text(docker.locator('td.type .media-type')), F.cli.docker.mediaType);
  assert.equal(await text(docker.locator('.size')), humanSize(F.cli.docker.size));
  await shot(page, 'tags-index');
  await page.close();
});

test('tags are paged: only the visible page’s manifests are fetched', async () => {
  const page = await newPage();
  const start = requests.length;
  await page.goto(`${URL_}/?n=2#/repo/${F.webapp.name}`);
  await page.locator('#tags tr[data-tag="1.1.0"] .size').waitFor();
  await settled(page);
  const rows = () => page.locator('#tags tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.tag));
  assert.deepEqual(await rows(), ['1.0.0', '1.1.0']);
  const seen = requests.slice(start);
  const tagList = seen.filter((r) => r.url.includes('/tags/list'));
  assert.equal(new URL(tagList[0].url).searchParams.get('n'), '2');
  const byTag = seen.filter((r) => /\/manifests\/[^/:]+$/.test(new URL(r.url).pathname)).map((r) => r.url.split('/').pop());
  assert.deepEqual(byTag.sort(), ['1.0.0', '1.1.0'], 'manifests of the first page only');
  assert.equal(await text(page.locator('#page-info')), 'Tags 1–2');

  await page.click('#next-page');
  await page.locator('#tags tr[data-tag="latest"] .size').waitFor();
  assert.deepEqual(await rows(), ['2.0.0-rc1', 'latest']);
  assert.equal(await text(page.locator('#page-info')), 'Tags 3–4');
  assert.equal(await page.locator('#next-page').count(), 0, 'no next page after the last');

  await page.click('#prev-page');
  await page.locator('#tags tr[data-tag="1.0.0"]').waitFor();
  assert.deepEqual(await rows(), ['1.0.0', '1.1.0']);
  await page.close();
});

test('the manifest view lists layers, referrers and a pull command', async () => {
  const page = await newPage();
  await page.goto(`${URL_}/#/repo/${F.webapp.name}`);
  await page.locator(`#tags tr[data-tag="${F.webapp.tag}"] a.tag-name`).click();
  await page.locator('#referrers table').waitFor();
  await shot(page, 'manifest');
  assert.equal(new URL(page.url()).hash, `#/repo/${F.webapp.name}/manifest/${F.webapp.tag}`);

  const pull = `docker pull ${HOST}/${F.webapp.name}:${F.webapp.tag}`;
  assert.equal(await text(page.locator('.pull-command code')), `$ ${pull}`);
  assert.equal(await page.locator('.pull-command button').getAttribute('data-copy'), pull);
  await page.click('.pull-command button');
  await page.locator('.pull-command button.copied').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pull);

  assert.equal(await text(page.locator('#manifest-digest')), F.webapp.digest);
  assert.equal(await text(page.locator('#total-size .size')), humanSize(F.webapp.size));
  const layerRows = page.locator('table.blobs tr.layer-row');
  assert.equal(await layerRows.count(), F.webapp.layers.length);
  for (const [i, l] of F.webapp.layers.entries()) {
    const r = layerRows.nth(i);
    assert.equal(await r.getAttribute('data-digest'), l.digest);
    assert.equal(await text(r.locator('.size')), humanSize(l.size));
    assert.equal(await text(r.locator('.media-type')), l.mediaType);
  }
  const config = page.locator('table.blobs tr.config-row');
  assert.equal(await config.getAttribute('data-digest'), F.webapp.config.digest);
  assert.equal(await config.locator('.size').getAttribute('data-bytes'), String(F.webapp.config.size));
  assert.equal(await text(page.locator('table.blobs tr.total .size')), humanSize(F.webapp.size));

  const refRows = page.locator('#referrers tbody tr');
  assert.equal(await refRows.count(), F.webapp.referrers.length);
  for (const r of F.webapp.referrers) {
    const row = page.locator(`#referrers tr[data-digest="${r.digest}"]`);
    assert.equal(await row.getAttribute('data-artifact-type'), r.artifactType);
    assert.equal(await text(row.locator('.media-type')), r.artifactType);
  }
  assert.deepEqual((await page.locator('#referrers .badge').allTextContents()).sort(), ['SBOM', 'Signature']);
  await page.locator('.summary time.created').first().waitFor();
  assert.equal(await text(page.locator('.summary time.created').first()), utc(F.webapp.created));

  // A referrer opens as a manifest too, with its subject linked back.
  const sig = F.webapp.referrers.find((r) => /sigstore/.test(r.artifactType));
  await page.locator(`#referrers tr[data-digest="${sig.digest}"] a`).click();
  // The subject's view also has a #manifest-digest: wait for the referrer's own.
  await page.locator('#manifest-digest', { hasText: sig.digest }).waitFor();
  assert.equal(await text(page.locator('#manifest-digest')), sig.digest);
  assert.equal(await page.locator(`.summary a[href$="${F.webapp.digest}"]`).count(), 1, 'subject link');
  assert.equal(await text(page.locator('.pull-command code')), `$ docker pull ${HOST}/${F.webapp.name}@${sig.digest}`);
  await page.close();
});

test('an index’s manifest view lists its platforms with their sizes', async () => {
  const page = await newPage();
  await page.goto(`${URL_}/#/repo/${F.cli.name}/manifest/${F.cli.tag}`);
  await page.locator('#no-referrers').waitFor();
  await settled(page);
  assert.equal(await text(page.locator('#manifest-digest')), F.cli.digest);
  for (const c of F.cli.children) {
    const row = page.locator(`table.platforms-table tr[data-digest="${c.digest}"]`);
    assert.equal(await row.getAttribute('data-platform'), c.platform);
    assert.equal(await text(row.locator('.size')), humanSize(c.size));
  }
  await shot(page, 'manifest-index');
  await page.close();
});

test('an empty registry says so and shows how to push', async () => {
  const page = await newPage();
  await page.goto(`${EMPTY_URL}/`);
  await page.locator('#empty').waitFor();
  const emptyHost = new URL(EMPTY_URL).host;
  assert.equal(await text(page.locator('#empty h2')), 'No repositories yet');
  const commands = await page.locator('#empty .command button').evaluateAll((bs) => bs.map((b) => b.dataset.copy));
  assert.ok(commands.includes(`docker push ${emptyHost}/alpine:latest`), commands.join('\n'));
  await shot(page, 'empty');
  await page.close();
});

test('registry errors show their code and message', async () => {
  const page = await newPage();
  const missing = 'no-such/repository';
  const api = await fetch(`${URL_}/v2/${missing}/tags/list`);
  const body = await api.json();
  assert.equal(api.status, 404);
  await page.goto(`${URL_}/#/repo/${missing}`);
  await page.locator('.error').waitFor();
  assert.equal(await text(page.locator('.error-code')), body.errors[0].code);
  assert.equal(await text(page.locator('.error-message')), body.errors[0].message);
  assert.match(await text(page.locator('.error')), /HTTP 404/);
  await shot(page, 'error');

  // A bad reference on an existing repository: the manifest's own error.
  await page.goto(`${URL_}/#/repo/${F.webapp.name}/manifest/no-such-tag`);
  await page.locator('.error').waitFor();
  assert.equal(await text(page.locator('.error-code')), 'MANIFEST_UNKNOWN');
  await page.close();
});

test('the repository list shows each repository’s unique and shared bytes and the total', async () => {
  const sizes = await (await fetch(`${URL_}/v2/_sizes`)).json();
  const page = await newPage();
  await page.goto(`${URL_}/#/`);
  await page.locator('#registry-total').waitFor();
  await settled(page);
  assert.equal(await page.locator('#total-stored .size').getAttribute('data-bytes'), String(sizes.total));
  for (const name of [F.webapp.name, F.cli.name]) {
    const r = sizes.repositories.find((x) => x.name === name);
    const el = page.locator(`#repo-list li[data-repo="${name}"] .repo-size`);
    assert.equal(await el.getAttribute('data-unique'), String(r.unique));
    assert.equal(await el.getAttribute('data-shared'), String(r.shared));
    assert.equal(await el.locator('.size').getAttribute('data-bytes'), String(r.unique + r.shared));
  }
  // The webapp's three images share their base layer: it is stored, and counted, once.
  const w = sizes.repositories.find((x) => x.name === F.webapp.name);
  assert.equal(w.unique + w.shared, F.webapp.stored);
  await page.goto(`${URL_}/#/repo/${F.webapp.name}`);
  await page.locator('#repo-size .repo-size').waitFor();
  assert.equal(await page.locator('#repo-size .repo-size').getAttribute('data-unique'), String(w.unique));
  await page.close();
});

test('with delete rights, a tag and a manifest are deleted after a confirmation', async () => {
  const accept = { Accept: MANIFEST_TYPES.join(', ') };
  const status = async (ref) => (await fetch(`${URL_}/v2/${F.webapp.name}/manifests/${ref}`, { method: 'HEAD', headers: accept })).status;
  const rc = F.webapp.others.find((o) => o.version === '2.0.0-rc1');
  const page = await newPage();
  await page.goto(`${URL_}/#/repo/${F.webapp.name}`);
  const row = page.locator('#tags tr[data-tag="2.0.0-rc1"]');
  await row.locator('.size').waitFor();
  await settled(page);
  // Dismissed: nothing is deleted.
  page.once('dialog', (d) => d.dismiss());
  await row.locator('button.delete-tag').click();
  assert.equal(await status('2.0.0-rc1'), 200);
  assert.equal(await row.count(), 1);
  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
    d.accept();
  });
  await row.locator('button.delete-tag').click();
  await row.waitFor({ state: 'detached' });
  assert.match(asked, /^Delete the tag “2\.0\.0-rc1” from /);
  assert.equal(await status('2.0.0-rc1'), 404);
  assert.equal(await status(rc.digest), 200, 'the manifest stays');

  // The manifest view deletes the manifest (and any tag on it).
  await page.goto(`${URL_}/#/repo/${F.webapp.name}/manifest/${rc.digest}`);
  await page.locator('#delete-manifest').waitFor();
  await settled(page);
  page.once('dialog', (d) => {
    asked = d.message();
    d.accept();
  });
  await page.click('#delete-manifest');
  await page.waitForFunction((h) => location.hash === h, `#/repo/${F.webapp.name}`);
  assert.match(asked, new RegExp(`^Delete the manifest ${rc.digest} from `));
  assert.equal(await status(rc.digest), 404);
  await page.close();
});

test('the UI only talks to its own origin, and nothing broke', () => {
  const origins = new Set([new URL(URL_).origin, new URL(EMPTY_URL).origin]);
  const foreign = requests.filter((r) => /^https?:/.test(r.url) && !origins.has(new URL(r.url).origin));
  assert.deepEqual(foreign.map((r) => r.url), [], 'requests outside the registry');
  const paths = new Set(requests.map((r) => new URL(r.url).pathname).filter((p) => !p.startsWith('/v2/')));
  assert.deepEqual([...paths].sort(), ['/', '/api.js', '/app.js', '/favicon.svg', '/style.css']);
  assert.deepEqual(problems, []);
});
