import { expect, request as playwrightRequest, test } from '@playwright/test';
import { logIn, users } from '../helpers';

test('a member creates an API key, sees it once, runs an algorithm with it and revokes it; an admin sees it in the audit log', async ({ page, baseURL }) => {
  const name = `scoring-job-${Date.now().toString(36)}`;
  await logIn(page, users.ana);
  await page.getByRole('link', { name: 'API keys' }).click();
  await expect(page).toHaveURL(/\/settings\/api-keys$/);
  await expect(page.getByRole('heading', { name: 'API keys' })).toBeVisible();

  const form = page.getByRole('form', { name: 'Create an API key' });
  await form.getByRole('button', { name: 'Create key' }).click();
  await expect(form.getByText('Give the key a name of 1 to 64 characters')).toBeVisible();
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Expires after (days)').fill('soon');
  await form.getByRole('button', { name: 'Create key' }).click();
  await expect(form.getByText('Write a number of days')).toBeVisible();
  await form.getByLabel('Expires after (days)').fill('30');
  await form.getByRole('button', { name: 'Create key' }).click();

  const shown = page.getByRole('textbox', { name: 'New API key' });
  await expect(shown).toHaveValue(/^ef_[A-Za-z0-9_-]{43}$/);
  const key = await shown.inputValue();
  await expect(page.getByText('Copy it now: it is not shown again.')).toBeVisible();
  const row = page.getByRole('region', { name: 'Your API keys' }).getByRole('row').filter({ hasText: name });
  await expect(row).toContainText(`${key.slice(0, 10)}…`);
  await expect(row).toContainText('Active');
  await expect(row).toContainText('Not yet');

  // A program, with no cookie, calls the REST API with the key.
  const program = await playwrightRequest.newContext({ baseURL });
  const call = () => program.post('/v1/algo/acme/sentiment/1.0.0', {
    headers: { Authorization: `Simple ${key}` },
    data: { text: 'what a great day' },
  });
  const ok = await call();
  expect(ok.status(), await ok.text()).toBe(200);
  expect((await ok.json()).result.label).toBe('positive');

  // Shown once: after a reload the key is gone from the page.
  await page.reload();
  await expect(row).toContainText('Active');
  await expect(page.getByRole('textbox', { name: 'New API key' })).toHaveCount(0);
  await expect(page.locator('body')).not.toContainText(key);
  await expect(row).not.toContainText('Not yet');

  await row.getByRole('button', { name: `Revoke ${name}` }).click();
  await expect(page.getByRole('status')).toHaveText(`The key “${name}” was revoked.`);
  await expect(row).toContainText('Revoked');
  const refused = await call();
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error.error_type).toBe('AuthorizationError');
  await program.dispose();

  // An admin sees both actions in the audit log.
  await page.getByRole('button', { name: 'Log out' }).click();
  await logIn(page, users.admin);
  await page.getByRole('button', { name: 'Admin' }).click();
  await page.getByRole('menuitem', { name: 'Audit log' }).click();
  await expect(page.getByRole('heading', { name: 'Audit log' })).toBeVisible();
  const filter = page.getByRole('form', { name: 'Filter the audit log' });
  await filter.getByLabel('From (UTC)').fill('yesterday');
  await filter.getByRole('button', { name: 'Show' }).click();
  await expect(filter.getByText('Write a time as YYYY-MM-DDTHH:MM (UTC).')).toBeVisible();
  await filter.getByLabel('From (UTC)').fill('');
  await filter.getByLabel('User').fill('ana');
  const events = page.getByRole('region', { name: 'Audit events' });
  for (const kind of ['api-key-created', 'api-key-revoked']) {
    await filter.getByLabel('Kind').selectOption(kind);
    await filter.getByRole('button', { name: 'Show' }).click();
    const event = events.getByRole('row').filter({ hasText: name });
    await expect(event).toHaveCount(1);
    await expect(event).toContainText(kind);
    await expect(event).toContainText('ana');
    await expect(event).toContainText(`${key.slice(0, 10)}…`);
  }
  await expect(events).not.toContainText(key);
});
