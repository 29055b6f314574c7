// The web UI in one access mode (UI_AUTH_FIXTURE.mode), in Debian's chromium via playwright-core.
// Run through `cargo test --test ui` (tests/ui.rs), which starts the registry in that mode and
// pushes one image as the fixture user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
/** With UI_SCREENSHOTS=1 the sign-in form is saved as docs/screenshots/sign-in.png. */
const SHOTS = process.env.UI_SCREENSHOTS === '1' ? path.join(ROOT, 'docs/screenshots') : null;

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through \`cargo test --test ui\` (tests/ui.rs)`);
  return v;
}

const URL_ = required('REGISTRY_URL').replace(/\/$/, '');
const F = JSON.parse(required('UI_AUTH_FIXTURE'));
const { chromium } = await import('playwright-core');

let browser;
const problems = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context (no stored credentials) and a page in it, watched for errors. */
async function freshPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 640 }, acceptDownloads: true });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // 401s and 404s the UI handles show up as failed resources; anything else is a problem.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}

const text = (loc) => loc.textContent().then((t) => t.replace(/\s+/g, ' ').trim());

async function signIn(page, password) {
  await page.locator('#sign-in-user').fill(F.user);
  await page.locator('#sign-in-password').fill(password);
  await page.locator('#sign-in button[type=submit]').click();
}

if (F.mode === 'authenticated') {
  test('authenticated: the UI asks to sign in, refuses a wrong password, then browses and signs out', async () => {
    const page = await freshPage();
    await page.goto(`${URL_}/`);
    await page.locator('#sign-in').waitFor();
    assert.equal(await page.locator('.repo-list').count(), 0, 'no repositories before signing in');

    await signIn(page, 'not-the-password');
    await page.locator('.sign-in-error .inline-error').waitFor();
    assert.match(await text(page.locator('.sign-in-error')), /UNAUTHORIZED/);
    if (SHOTS) {
      await page.evaluate(() => document.activeElement && document.activeElement.blur());
      await page.screenshot({ path: path.join(SHOTS, 'sign-in.png') });
    }
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'nothing kept after a failed sign-in');

    await signIn(page, F.password);
    await page.locator(`.repo-list a:has-text("${F.repo}")`).waitFor();
    assert.equal(await text(page.locator('.account-user')), F.user);

    // The repository's tags and a manifest load with the credentials; a blob downloads with them.
    await page.goto(`${URL_}/#/repo/${F.repo}/manifest/v1`);
    const link = page.locator('.digest-link').first();
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ui-dl-'));
    const file = path.join(dir, 'blob');
    await download.saveAs(file);
    const size = fs.statSync(file).size;
    fs.rmSync(dir, { recursive: true, force: true });
    assert.ok(size > 0, 'the downloaded blob is empty');

    await page.locator('#sign-out').click();
    await page.locator('#sign-in').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'credentials forgotten on sign-out');
    await page.context().close();
  });
}

if (F.mode === 'anonymous-pull') {
  test('anonymous-pull: the UI browses without credentials and offers to sign in', async () => {
    const page = await freshPage();
    await page.goto(`${URL_}/`);
    await page.locator(`.repo-list a:has-text("${F.repo}")`).waitFor();
    await page.goto(`${URL_}/#/repo/${F.repo}/manifest/v1`);
    await page.locator('.digest-link').first().waitFor();
    await page.waitForFunction(() => document.getElementById('app').getAttribute('aria-busy') === 'false');
    assert.equal(await page.locator('#delete-manifest').count(), 0, 'no delete for an anonymous visitor');

    await page.locator('#sign-in-link').click();
    await page.locator('#sign-in').waitFor();
    await signIn(page, F.password);
    await page.locator('.account-user').waitFor();
    assert.equal(await text(page.locator('.account-user')), F.user);
    await page.locator(`.repo-list a:has-text("${F.repo}")`).waitFor();
    // Signed in with delete rights, the manifest can be deleted.
    await page.goto(`${URL_}/#/repo/${F.repo}/manifest/v1`);
    await page.locator('#delete-manifest').waitFor();
    await page.context().close();
  });
}

if (F.mode === 'read-only') {
  test('read-only: the UI browses without credentials and offers no sign-in', async () => {
    const page = await freshPage();
    await page.goto(`${URL_}/`);
    if (F.repo) {
      await page.locator(`.repo-list a:has-text("${F.repo}")`).waitFor();
    } else {
      await page.waitForFunction(() => document.getElementById('app').getAttribute('aria-busy') === 'false');
    }
    assert.equal(await page.locator('#sign-in').count(), 0);
    assert.equal(await page.locator('.error').count(), 0);
    assert.equal(await page.locator('#sign-in-link').count(), 0);
    if (F.repo) {
      await page.goto(`${URL_}/#/repo/${F.repo}/manifest/v1`);
      await page.locator('.digest-link').first().waitFor();
      await page.waitForFunction(() => document.getElementById('app').getAttribute('aria-busy') === 'false');
      assert.equal(await page.locator('#delete-manifest').count(), 0, 'nothing is deleted in read-only');
    }
    await page.context().close();
  });
}

test('nothing broke in the page', () => {
  assert.deepEqual(problems, []);
});
