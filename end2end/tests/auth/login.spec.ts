import { expect, test } from '@playwright/test';
import { logIn, users } from '../helpers';

test('an admin logs in and reaches Queue manager through the Admin menu', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/login/);
  await logIn(page, users.admin);
  await expect(page.getByRole('heading', { name: 'ML service catalog' })).toBeVisible();

  await page.getByRole('button', { name: 'Admin' }).click();
  const menu = page.getByRole('menu', { name: 'Admin' });
  await expect(menu.getByRole('group', { name: 'System actions' })).toBeVisible();
  await menu.getByRole('menuitem', { name: 'Queue manager' }).click();

  await expect(page).toHaveURL(/\/admin\/queues$/);
  await expect(page.getByRole('heading', { name: 'Queue manager' })).toBeVisible();
  await expect(menu).toBeHidden();
});

test('the Admin menu works from the keyboard and closes with Escape', async ({ page }) => {
  await logIn(page, users.admin);
  const button = page.getByRole('button', { name: 'Admin' });
  await button.focus();
  await page.keyboard.press('Enter');
  await expect(button).toHaveAttribute('aria-expanded', 'true');
  await expect(page.getByRole('menuitem', { name: 'Queue manager' })).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(page.getByRole('menu', { name: 'Admin' })).toBeHidden();
  await expect(button).toHaveAttribute('aria-expanded', 'false');
});

test('a member sees no Admin menu and is refused at the Queue manager address', async ({ page }) => {
  await logIn(page, users.ana);
  await expect(page.getByRole('link', { name: 'ML service catalog' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Admin' })).toHaveCount(0);

  await page.goto('/admin/queues');
  await expect(page.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
  await expect(page.getByText('You are not allowed to view this page.')).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Queue manager' })).toHaveCount(0);
});

test('a wrong password shows an error that does not say which part was wrong', async ({ page }) => {
  await page.goto('/login');
  await page.getByLabel('Username').fill(users.ana.name);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toHaveText('Wrong username or password.');

  await page.getByLabel('Username').fill('no-such-user');
  await page.getByLabel('Password').fill(users.ana.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(alert).toHaveText('Wrong username or password.');
  await expect(page).toHaveURL(/\/login/);
  await expect(page.getByRole('button', { name: 'Log out' })).toHaveCount(0);
});

test('empty fields are caught before anything is sent', async ({ page }) => {
  await page.goto('/login');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert')).toHaveText('Enter your username and password.');
});

test('logging out returns to the login page and the old session is gone', async ({ page }) => {
  await logIn(page, users.ana);
  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.goto('/catalog');
  await expect(page).toHaveURL(/\/login\?next=%2Fcatalog|\/login\?next=\/catalog/);
  const reply = await page.request.post('/api/current_user', { data: {} });
  expect(await reply.json()).toBeNull();
});

test('a visitor sent to the login page comes back to the page they asked for', async ({ page }) => {
  await page.goto('/admin/queues');
  await expect(page).toHaveURL(/\/login\?next=/);
  await page.getByLabel('Username').fill(users.admin.name);
  await page.getByLabel('Password').fill(users.admin.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(/\/admin\/queues$/);
  await expect(page.getByRole('heading', { name: 'Queue manager' })).toBeVisible();
});

test('an unknown address shows a page-not-found message', async ({ page }) => {
  await page.goto('/no/such/page');
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
});

test('the session cookie is HttpOnly and out of reach of page scripts', async ({ page, context }) => {
  await logIn(page, users.ana);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'eventflows_session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Lax');
  expect(await page.evaluate(() => document.cookie)).not.toContain('eventflows_session');
});
