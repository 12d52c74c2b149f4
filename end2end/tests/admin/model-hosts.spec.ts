import { expect, test } from '@playwright/test';
import { logIn, users } from '../helpers';

const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

test('an admin allows a model host, a member can then use it, and the admin removes it', async ({ page }) => {
  const host = `${unique('models')}.example:8080`;
  await logIn(page, users.admin);
  await page.getByRole('button', { name: 'Admin' }).click();
  await page.getByRole('menuitem', { name: 'Model hosts' }).click();
  await expect(page).toHaveURL(/\/admin\/model-hosts$/);
  await expect(page.getByRole('heading', { name: 'Model hosts' })).toBeVisible();

  const form = page.getByRole('form', { name: 'Allow a model host' });
  const field = form.getByLabel('Host or URL prefix');
  await field.fill('http://user:secret@models.example/');
  await form.getByRole('button', { name: 'Allow' }).click();
  await expect(form.getByText('A URL prefix has no user name or password.')).toBeVisible();
  await expect(field).toHaveAttribute('aria-invalid', 'true');
  await expect(field).toHaveAccessibleDescription('A URL prefix has no user name or password.');

  await field.fill(host.toUpperCase());
  await form.getByRole('button', { name: 'Allow' }).click();
  await expect(page.getByRole('status')).toHaveText(`${host} allowed.`);
  const row = page.getByRole('region', { name: 'Allowed model hosts' }).getByRole('row').filter({ hasText: host });
  await expect(row).toContainText('admin');
  await expect(field).toHaveValue('');

  await field.fill(host);
  await form.getByRole('button', { name: 'Allow' }).click();
  await expect(form.getByRole('alert')).toContainText(`${host} is allowed already.`);

  // A member may now add a version on that host, and on no other.
  const member = await page.context().browser()!.newPage({ baseURL: new URL(page.url()).origin });
  await logIn(member, users.ana);
  // acme/echo: the other tests pick versions of acme/sentiment and word-count by their order.
  await member.goto('/algorithms/acme/echo');
  const version = `7.${Date.now() % 1000}.0`;
  await member.getByRole('textbox', { name: 'Version' }).fill(version);
  await member.getByRole('textbox', { name: 'Runtime' }).fill('http:http://169.254.169.254/latest/meta-data');
  await member.getByRole('button', { name: 'Add version' }).click();
  await expect(member.getByText('The model host 169.254.169.254:80 is not allowed; an admin can allow it under Admin → Model hosts.')).toBeVisible();
  await member.getByRole('textbox', { name: 'Runtime' }).fill(`http:http://${host}/predict`);
  await member.getByRole('button', { name: 'Add version' }).click();
  await expect(member.getByRole('status')).toHaveText(`Version ${version} added.`);
  await member.goto('/admin/model-hosts');
  await expect(member.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
  await member.close();

  await row.getByRole('button', { name: `Remove ${host}` }).click();
  await expect(page.getByRole('status')).toHaveText(`${host} removed.`);
  await expect(row).toHaveCount(0);
});
