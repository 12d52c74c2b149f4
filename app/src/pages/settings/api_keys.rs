use leptos::prelude::*;

use crate::components::style;

use crate::api::{create_api_key, list_api_keys, revoke_api_key};
use crate::components::{
    ErrorNotice, FieldError, FormError, Listing, RowRemoveButton, Submit, SuccessNotice, Table,
    invalid,
};
use crate::domain::{ApiKey, AppError, CreatedApiKey};

/// Settings → **API keys**: keys that let programs call the REST API as
/// this user. A new key is shown once.
#[component]
pub fn ApiKeysPage() -> impl IntoView {
    let keys = LocalResource::new(list_api_keys);
    let notice = RwSignal::new(None::<String>);
    let failed = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<CreatedApiKey>);
    let reload = Callback::new(move |()| keys.refetch());

    view! {
        <p class="text-sm text-slate-500">"Settings"</p>
        <h1 class="text-2xl font-semibold">"API keys"</h1>
        <p class="mt-1 max-w-3xl text-slate-600">
            "A key lets a program run algorithms through the REST API as you, with your access: "
            <code class="rounded bg-slate-100 px-1 text-sm">"POST /v1/algo/ORG/NAME/VERSION"</code>
            " with the header "
            <code class="rounded bg-slate-100 px-1 text-sm">"Authorization: Simple KEY"</code>
            ". Revoke a key you no longer use."
        </p>
        {move || created.get().map(|c| view! { <NewKey created=c /> })}
        {move || notice.get().map(|m| view! { <div class="mt-4"><SuccessNotice message=m /></div> })}
        {move || failed.get().map(|m| view! { <div class="mt-4"><ErrorNotice message=m /></div> })}
        <section class="mt-6" aria-label="Your API keys">
            <Listing list=keys what="API keys"
                empty="You have no API keys."
                hint="Create one below for each program that calls the REST API."
                view=move |list| view! {
                    <KeyTable list=list notice=notice failed=failed created=created reload=reload />
                }
            />
        </section>
        <CreateForm notice=notice failed=failed created=created reload=reload />
    }
}

/// The key just created, with the warning that it is shown only now.
#[component]
fn NewKey(created: CreatedApiKey) -> impl IntoView {
    view! {
        <section
            aria-label="New API key"
            class="mt-4 rounded-lg border border-amber-300 bg-amber-50 p-4"
        >
            <p class="font-medium">
                {format!("Your new key \u{201c}{}\u{201d}. Copy it now: it is not shown again.", created.summary.name)}
            </p>
            <input
                readonly
                aria-label="New API key"
                class="mt-2 w-full rounded border border-slate-300 bg-white px-3 py-1.5 font-mono text-sm"
                prop:value=created.key.clone()
            />
        </section>
    }
}

#[component]
fn KeyTable(
    list: Vec<ApiKey>,
    notice: RwSignal<Option<String>>,
    failed: RwSignal<Option<String>>,
    created: RwSignal<Option<CreatedApiKey>>,
    reload: Callback<()>,
) -> impl IntoView {
    let revoke = Submit::reporting(
        |(id, name): (String, String)| async move { revoke_api_key(id).await.map(|()| name) },
        move |name| {
            notice.set(Some(format!("The key \u{201c}{name}\u{201d} was revoked.")));
            reload.run(());
        },
        move |refusal| failed.set(Some(refusal.to_string())),
    );
    let pending = revoke.pending();
    view! {
        <Table columns=&["Name", "Key", "Created", "Expires", "Last used", "Status", ""]>
            {list
                .into_iter()
                .map(|key| {
                    let active = key.state == "active";
                    let (id, name) = (key.id.clone(), key.name.clone());
                    let label = format!("Revoke {}", key.name);
                    let state = match key.state.as_str() {
                        "active" => "Active",
                        "expired" => "Expired",
                        _ => "Revoked",
                    };
                    view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2 font-medium">{key.name}</td>
                            <td class="px-4 py-2 font-mono text-xs">{format!("{}\u{2026}", key.prefix)}</td>
                            <td class="px-4 py-2">{key.created_at}</td>
                            <td class="px-4 py-2">{key.expires_at.unwrap_or_else(|| "Never".into())}</td>
                            <td class="px-4 py-2">{key.last_used_at.unwrap_or_else(|| "Not yet".into())}</td>
                            <td class="px-4 py-2">{state}</td>
                            <td class="px-4 py-2 text-right">
                                {active.then(|| view! {
                                    <RowRemoveButton
                                        label=label.clone()
                                        pending=pending
                                        on_click=Callback::new({
                                            let (id, name) = (id.clone(), name.clone());
                                            move |()| {
                                                notice.set(None);
                                                failed.set(None);
                                                created.set(None);
                                                revoke.run((id.clone(), name.clone()));
                                            }
                                        })
                                    >
                                        "Revoke"
                                    </RowRemoveButton>
                                })}
                            </td>
                        </tr>
                    }
                })
                .collect_view()}

        </Table>
    }
}

#[component]
fn CreateForm(
    notice: RwSignal<Option<String>>,
    failed: RwSignal<Option<String>>,
    created: RwSignal<Option<CreatedApiKey>>,
    reload: Callback<()>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let create = Submit::new(
        |(name, days): (String, Option<u32>)| create_api_key(name, days),
        move |key| {
            created.set(Some(key));
            name.set(String::new());
            days.set(String::new());
            reload.run(());
        },
    );
    let (error, pending) = (create.error, create.pending());
    view! {
        <form
            aria-label="Create an API key"
            class="mt-6 space-y-3 rounded-lg bg-white p-6 shadow"
            novalidate
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                notice.set(None);
                failed.set(None);
                created.set(None);
                let text = days.get_untracked();
                let text = text.trim();
                let expires = if text.is_empty() {
                    None
                } else {
                    match text.parse::<u32>() {
                        Ok(d) => Some(d),
                        Err(_) => {
                            error.set(Some(AppError::validation(
                                "expires_in_days",
                                "Write a number of days, or leave it empty for a key that does not expire.",
                            )));
                            return;
                        }
                    }
                };
                create.run((name.get_untracked(), expires));
            }
        >
            <h2 class="text-lg font-semibold">"Create an API key"</h2>
            <div>
                <label for="api-key-name" class="block text-sm font-medium">"Name"</label>
                <input
                    id="api-key-name"
                    aria-describedby="api-key-name-error"
                    aria-invalid=invalid(error, "name")
                    placeholder="nightly-scoring-job"
                    class="mt-1 w-full max-w-md rounded border border-slate-300 px-3 py-1.5"
                    bind:value=name
                />
                <FieldError error=error field="name" input="api-key-name" />
            </div>
            <div>
                <label for="api-key-days" class="block text-sm font-medium">"Expires after (days)"</label>
                <input
                    id="api-key-days"
                    aria-describedby="api-key-days-error"
                    aria-invalid=invalid(error, "expires_in_days")
                    inputmode="numeric"
                    placeholder="Never"
                    class="mt-1 w-32 rounded border border-slate-300 px-3 py-1.5"
                    bind:value=days
                />
                <FieldError error=error field="expires_in_days" input="api-key-days" />
            </div>
            <FormError error=error />
            <button
                type="submit"
                class=style::BUTTON_PRIMARY
                disabled=move || pending.get()
            >
                {move || if pending.get() { "Creating…" } else { "Create key" }}
            </button>
        </form>
    }
}
