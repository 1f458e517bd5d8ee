// A team's cloud credentials, added through the browser (without JavaScript and hydrated):
// forms with errors by field that keep what was typed but the secrets, then a search of the
// database file, the server's log and every page for the secrets.
import { readFileSync, readdirSync } from 'node:fs';
import { signIn } from '../dev-browser';
import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { APP_LOG, STATE } from '../playwright.config';

const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const SSH_KEY = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkAAAAJh3EdC0dxHQ
tAAAAAtzc2gtZWQyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkA
AAAEC3huHkZV27YzoAIvf7SEsz8NAotFgDUAmdMs+7Q1uBOkIDrt1iRttaqzoDfp2d0jQ2
sHrjKow5DkzaYlD+zrCQAAAAD3Rlc3RAY29wci1wb29scwECAwQFBg==
-----END OPENSSH PRIVATE KEY-----`;
const HOST_LINE =
  'vmhost.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIDrt1iRttaqzoDfp2d0jQ2sHrjKow5DkzaYlD+zrCQ';

/** Every secret typed below, by a piece no other text shares. */
const NEEDLES = [
  'wJalrXUtnFEMI',
  'app-cred-secret-Zq8vN3kR',
  'os-password-Tm4pW9xL',
  'ibm-api-key-0123456789',
  'huHkZV27YzoAIvf7SEsz8NAotFgDUAmdMs',
];

type Kind = { card: string; name: string; fields: [string, string][] };
const KINDS: Kind[] = [
  {
    card: 'Amazon Web Services',
    name: 'aws-main',
    fields: [
      ['Access key ID', 'AKIAIOSFODNN7EXAMPLE'],
      ['Secret access key', AWS_SECRET],
      ['Default region', 'us-east-1'],
    ],
  },
  {
    card: 'OpenStack: application credential',
    name: 'osuosl',
    fields: [
      ['Auth URL', 'https://keystone.example.org:5000/v3'],
      ['Region', 'RegionOne'],
      ['Application credential ID', '0123456789abcdef0123456789abcdef'],
      ['Application credential secret', 'app-cred-secret-Zq8vN3kR'],
    ],
  },
  {
    card: 'OpenStack: password (v3)',
    name: 'osuosl-password',
    fields: [
      ['Auth URL', 'https://keystone.example.org:5000/v3'],
      ['Region', 'RegionOne'],
      ['Username', 'copr'],
      ['Password', 'os-password-Tm4pW9xL'],
      ['Project name', 'copr'],
    ],
  },
  {
    card: 'IBM Cloud',
    name: 'ibm-us-east',
    fields: [
      ['API key', 'ibm-api-key-0123456789abcdefghijKLMNOPQRSTUV'],
      ['Region', 'us-east'],
    ],
  },
  {
    card: 'libvirt over SSH',
    name: 'vmhost',
    fields: [
      ['Connection URI', 'qemu+ssh://copr@vmhost.example.org/system'],
      ['SSH private key', SSH_KEY],
      ['Host key (known_hosts line)', HOST_LINE],
    ],
  },
  { card: 'Local demo', name: 'demo', fields: [] },
];

/** A form field by its label (a secret's label also carries a "secret" badge). */
function field(page: Page, label: string) {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return page.getByLabel(new RegExp(`^${escaped}( secret)?$`));
}


async function expectAccessible(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(results.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

function expectNoSecret(where: string, text: string) {
  for (const n of NEEDLES) {
    expect(text.includes(n), `${n} found in ${where}`).toBe(false);
  }
}

test.describe.configure({ mode: 'serial' });

for (const javaScriptEnabled of [false, true]) {
  const team = javaScriptEnabled ? 'team-hydrated' : 'team-plain';
  test.describe(javaScriptEnabled ? 'hydrated' : 'without JavaScript', () => {
    test.use({ javaScriptEnabled });

    test('a member adds a credential of every kind; a failed form keeps all but the secret', async ({ page }) => {
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await signIn(page, javaScriptEnabled ? 'hana' : 'paul', team);
      await page.goto(`/teams/${team}`);
      await expect(page.getByTestId('no-credentials')).toContainText('No credentials yet');
      await page.getByTestId('add-credential').click();
      await expect(page.getByRole('heading', { level: 1, name: 'Add a credential' })).toBeVisible();

      // A wrong access key id: the error stands next to its field, the rest is kept.
      await page.getByRole('link', { name: 'Amazon Web Services' }).click();
      await field(page, 'Name').fill('aws-main');
      await field(page, 'Access key ID').fill('AKIA-wrong');
      await field(page, 'Secret access key').fill(AWS_SECRET);
      await field(page, 'Default region').fill('us-east-1');
      await page.getByRole('button', { name: 'Add credential' }).click();
      await expect(page.getByTestId('form-errors')).toContainText('One field needs fixing');
      await expect(page.getByTestId('secrets-cleared')).toBeVisible();
      await expect(page.locator('#f-access_key_id-error')).toContainText('starting with AKIA');
      await expect(field(page, 'Access key ID')).toHaveAttribute('aria-invalid', 'true');
      await expect(field(page, 'Access key ID')).toHaveValue('AKIA-wrong');
      await expect(field(page, 'Name')).toHaveValue('aws-main');
      await expect(field(page, 'Default region')).toHaveValue('us-east-1');
      await expect(field(page, 'Secret access key')).toHaveValue('');
      expectNoSecret('the returned form', await page.content());
      if (javaScriptEnabled) await expectAccessible(page);

      for (const kind of KINDS) {
        await page.goto(`/teams/${team}/credentials/new`);
        await page.getByRole('link', { name: kind.card, exact: true }).click();
        await field(page, 'Name').fill(kind.name);
        for (const [label, value] of kind.fields) {
          await field(page, label).fill(value);
        }
        await page.getByRole('button', { name: 'Add credential' }).click();
        await expect(page).toHaveURL(new RegExp(`/teams/${team}/credentials/\\d+$`));
        await expect(page.getByTestId('notice')).toContainText(`credential ${kind.name}.`);
        await expect(page.getByRole('heading', { level: 1, name: kind.name })).toBeVisible();
        expectNoSecret(`the page of ${kind.name}`, await page.content());
      }
      if (javaScriptEnabled) await expectAccessible(page);

      await page.goto(`/teams/${team}`);
      const table = page.getByTestId('credential-table');
      for (const kind of KINDS) await expect(table).toContainText(kind.name);
      await expect(table).toContainText('…EKEY');
      expectNoSecret('the team page', await page.content());
      expect(errors).toEqual([]);
    });
  });
}

test('the secrets are in no database file, no log line and no page of a member or an admin', async ({ page }) => {
  const dir = `${STATE}/app`;
  for (const f of readdirSync(dir).filter((f) => f.startsWith('db.sqlite'))) {
    expectNoSecret(f, readFileSync(`${dir}/${f}`).toString('latin1'));
  }
  const log = readFileSync(APP_LOG, 'utf8');
  expect(log).toContain('credential added');
  expectNoSecret('the server log', log);

  await signIn(page, 'carol', 'copr-admins');
  for (const path of ['/', '/admin', '/teams/team-plain', '/teams/team-hydrated', '/teams/team-plain/credentials/1']) {
    await page.goto(path);
    expectNoSecret(path, await page.content());
  }
  await expect(page.getByTestId('credential-facts')).toContainText('AKIAIOSFODNN7EXAMPLE');
  for (const [fn, data] of [
    ['credentials', { team: 'team-plain' }],
    ['credential', { team: 'team-plain', id: '5' }],
    ['admin_overview', {}],
  ] as const) {
    // Posted like the page's own scripts post them: from this site.
    const res = await page.request.post(`/api/ui/${fn}`, {
      form: data,
      headers: { origin: new URL(page.url()).origin },
    });
    expect(res.status()).toBe(200);
    expectNoSecret(fn, await res.text());
  }
});

test('credential pages read well on a phone', async ({ page }) => {
  await signIn(page, 'paul', 'team-plain');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ['/teams/team-plain', '/teams/team-plain/credentials/new?kind=libvirt', '/teams/team-plain/credentials/1']) {
    await page.goto(path);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width, path).toBeLessThanOrEqual(390);
  }
});
