// Tag routing in the browser, without JavaScript and hydrated: an admin keeps the rules
// (a refused rule keeps what was typed, with the reason beside the field), tests a build,
// makes an API token that Copr polls the rules with, and a team member sees where the
// team's builds would go, live once the page is hydrated.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { test, expect } from '@playwright/test';
import { newPage, signIn } from '../dev-browser';
import { BIN, FLOW, STATE, flowEnv } from '../playwright.config';

test.use({ baseURL: FLOW });

// A pool that runs builds tagged on_demand_powerful (on demand: nothing starts while idle).
test.beforeAll(() => {
  mkdirSync(`${STATE}/flow`, { recursive: true });
  const file = `${STATE}/flow/powerful-pools.yaml`;
  writeFileSync(
    file,
    [
      'powerful:',
      '  max: 2',
      '  max_prealloc: 0',
      '  cmd_new: "true"',
      '  cmd_delete: "true"',
      '  tags: [{name: copr_builder, priority: -40}, arch_x86_64, arch_aarch64]',
      '  tags_on_demand: [on_demand_powerful]',
      '',
    ].join('\n'),
  );
  execFileSync(BIN, ['pools', 'import', file], { env: { ...process.env, ...flowEnv }, stdio: 'pipe' });
});



for (const javaScriptEnabled of [false, true]) {
  const mode = javaScriptEnabled ? 'hydrated' : 'plain';
  const owner = `@asahi-${mode}`;
  test(`an admin keeps the rules and a member sees where builds go (${mode})`, async ({ browser }) => {
    const admin = await newPage(browser, javaScriptEnabled, FLOW);
    await signIn(admin, 'carol', 'copr-admins');
    await admin.goto('/admin');
    await admin.getByRole('link', { name: 'Routing rules' }).click();
    const add = admin.getByTestId('add-rule-form');

    // A tag no pool offers is refused beside the field, and what was typed stays.
    await add.getByLabel('Pattern').fill(`${owner}/kernel/.*(x86_64|aarch64)/kernel`);
    await add.getByLabel('Tags').fill('on_demand_huge');
    await add.getByRole('button', { name: 'Add the rule' }).click();
    await expect(admin.getByTestId('add-rule-form').locator('.field-error').first()).toContainText('No active pool offers on_demand_huge');
    await expect(admin.getByTestId('add-rule-form').getByLabel('Pattern')).toHaveValue(`${owner}/kernel/.*(x86_64|aarch64)/kernel`);
    await admin.getByTestId('add-rule-form').getByLabel('Tags').fill('on_demand_powerful');
    await admin.getByTestId('add-rule-form').getByRole('button', { name: 'Add the rule' }).click();
    await expect(admin.getByTestId('notice')).toContainText('Rule added.');
    await expect(admin.getByTestId('rule-list')).toContainText(`${owner}/kernel/.*(x86_64|aarch64)/kernel`);

    // The tester: which tags, from which rule, and which pool takes the build.
    const tester = admin.getByTestId('tester');
    await tester.getByLabel('Owner').fill(owner);
    await tester.getByLabel('Project').fill('kernel');
    await tester.getByLabel('Chroot').fill('fedora-41-aarch64');
    await tester.getByLabel('Package').fill('kernel');
    await tester.getByRole('button', { name: 'Test' }).click();
    const route = admin.getByTestId('tester').getByTestId('route-table');
    await expect(route).toContainText('on_demand_powerful');
    await expect(route.getByTestId('route-pools')).toContainText('powerful');

    // A member of the team sees where the team's builds would go.
    const member = await newPage(browser, javaScriptEnabled, FLOW);
    await signIn(member, 'dana', `routing-${mode}`);
    await member.goto(`/teams/routing-${mode}`);
    const builds = member.getByTestId('team-preview').getByLabel('Builds, one per line');
    await builds.fill(`${owner}/kernel/fedora-41-aarch64/kernel\nnot a build`);
    if (!javaScriptEnabled) {
      await member.getByRole('button', { name: 'Show where they go' }).click();
    }
    const table = member.getByTestId('route-table');
    await expect(table.locator('tr', { hasText: 'fedora-41-aarch64/kernel' })).toContainText('on_demand_powerful');
    await expect(table.locator('tr', { hasText: 'fedora-41-aarch64/kernel' }).getByTestId('route-pools')).toContainText('powerful');
    await expect(table.locator('tr', { hasText: 'not a build' })).toContainText('Write a build as owner/project/chroot/package');
    if (javaScriptEnabled) {
      // Live: another line, no submit.
      await builds.fill(`${owner}/other/fedora-41-x86_64/other`);
      await expect(table.locator('tr', { hasText: 'fedora-41-x86_64/other' }).locator('td[data-label="Tags added"]')).toHaveText('none');
    }

    // On the request form, the requested pool counts as approved: the team's builds reach it.
    await member.getByTestId('add-credential').click();
    await member.getByRole('link', { name: 'Local demo', exact: true }).click();
    await member.getByLabel('Name', { exact: true }).fill('demo');
    await member.getByRole('button', { name: 'Add credential' }).click();
    await member.goto(`/teams/routing-${mode}`);
    await member.getByTestId('request-pool').click();
    await member.getByRole('link', { name: 'demo' }).click();
    const form = member.getByTestId('request-form');
    await form.getByLabel('Name', { exact: true }).fill(`lane-${mode}`);
    await form.getByLabel('Where would my builds go? (optional)').fill(`@routing-${mode}/llvm/fedora-rawhide-x86_64/clang`);
    if (!javaScriptEnabled) {
      await member.getByRole('button', { name: 'Preview the cost' }).click();
    }
    const planned = member.getByTestId('request-form').getByTestId('route-table');
    await expect(planned).toContainText(`team_routing-${mode}`);
    await expect(planned.getByTestId('route-pools')).toContainText(`lane-${mode}-x86_64 (requested)`);
  });
}

test('an admin makes a token that Copr polls the rules with, and revokes it', async ({ browser, request }) => {
  const admin = await newPage(browser, false, FLOW);
  await signIn(admin, 'carol', 'copr-admins');
  await admin.goto('/admin/tokens');
  await admin.getByLabel('Name').fill('copr-e2e');
  await admin.getByRole('button', { name: 'Make the token' }).click();
  const token = await admin.getByTestId('new-token').inputValue();
  expect(token).toMatch(/^cpt_[A-Za-z0-9_-]{43}$/);

  const polled = await request.get('/api/v1/routing', { headers: { Authorization: `Bearer ${token}` } });
  expect(polled.status()).toBe(200);
  const etag = polled.headers()['etag'];
  expect((await polled.json()).rules.map((r: { tags: string[] }) => r.tags)).toContainEqual(['on_demand_powerful']);
  const again = await request.get('/api/v1/routing', { headers: { Authorization: `Bearer ${token}`, 'If-None-Match': etag } });
  expect(again.status()).toBe(304);
  const conf = await request.get('/api/v1/routing/copr.conf', { headers: { Authorization: `Bearer ${token}` } });
  expect(await conf.text()).toContain('EXTRA_BUILDCHROOT_TAGS = [');

  await admin.getByRole('link', { name: 'Back to API tokens' }).click();
  const row = admin.getByTestId('token-table').locator('tr', { hasText: 'copr-e2e' });
  await expect(row).toContainText(`…${token.slice(-4)}`);
  await expect(admin.locator('body')).not.toContainText(token);
  await row.getByRole('button', { name: 'Revoke copr-e2e' }).click();
  await expect(admin.getByTestId('notice')).toContainText('Revoked copr-e2e');
  const refused = await request.get('/api/v1/routing', { headers: { Authorization: `Bearer ${token}` } });
  expect(refused.status()).toBe(401);
});
