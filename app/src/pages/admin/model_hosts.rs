use leptos::prelude::*;

use crate::components::style;

use crate::api::{allow_model_host, list_model_hosts, remove_model_host};
use crate::components::{
    ErrorNotice, FieldError, FormError, Listing, RowRemoveButton, Submit, SuccessNotice, Table,
    invalid,
};
use crate::domain::ModelHost;

/// Admin → System actions → **Model hosts**: where `http:` runtimes may
/// send inputs. A version whose model server is on no entry cannot be
/// added, and is not called.
#[component]
pub fn ModelHostsPage() -> impl IntoView {
    let hosts = LocalResource::new(list_model_hosts);
    let notice = RwSignal::new(None::<String>);
    let failed = RwSignal::new(None::<String>);
    let reload = Callback::new(move |()| hosts.refetch());

    view! {
        <h1 class="text-2xl font-semibold">"Model hosts"</h1>
        <p class="mt-1 max-w-3xl text-slate-600">
            "Versions with an http: or http-batch: runtime may call only the model servers allowed here. "
            "An entry is a host (models.example.com), a host and port (10.0.0.5:8080), every name under a domain (*.models.example.com), "
            "or a URL prefix (https://models.example.com/v1/). A name under a *. entry that resolves to this machine or to a link-local address is refused."
        </p>
        {move || notice.get().map(|m| view! { <div class="mt-4"><SuccessNotice message=m /></div> })}
        {move || failed.get().map(|m| view! { <div class="mt-4"><ErrorNotice message=m /></div> })}
        <section class="mt-6" aria-label="Allowed model hosts">
            <Listing list=hosts what="model hosts"
                empty="No model hosts are allowed yet."
                hint="Until one is, versions can only run built-in algorithms. Allow a model server below."
                view=move |list| view! { <HostTable list=list notice=notice failed=failed reload=reload /> }
            />
        </section>
        <AllowForm notice=notice failed=failed reload=reload />
    }
}

#[component]
fn HostTable(
    list: Vec<ModelHost>,
    notice: RwSignal<Option<String>>,
    failed: RwSignal<Option<String>>,
    reload: Callback<()>,
) -> impl IntoView {
    let remove = Submit::reporting(
        |entry: String| async move { remove_model_host(entry.clone()).await.map(|()| entry) },
        move |entry| {
            notice.set(Some(format!("{entry} removed.")));
            reload.run(());
        },
        move |refusal| failed.set(Some(refusal.to_string())),
    );
    let pending = remove.pending();
    view! {
        <Table columns=&["Entry", "Allowed by", "Allowed at", ""]>
            {list
                .into_iter()
                .map(|host| {
                    let entry = host.entry.clone();
                    let label = format!("Remove {}", host.entry);
                    view! {
                        <tr class="border-t border-slate-100">
                            <td class="px-4 py-2 font-mono text-xs">{host.entry}</td>
                            <td class="px-4 py-2">{host.added_by}</td>
                            <td class="px-4 py-2">{host.added_at}</td>
                            <td class="px-4 py-2 text-right">
                                <RowRemoveButton
                                    label=label
                                    pending=pending
                                    on_click=Callback::new(move |()| {
                                        notice.set(None);
                                        failed.set(None);
                                        remove.run(entry.clone());
                                    })
                                >
                                    "Remove"
                                </RowRemoveButton>
                            </td>
                        </tr>
                    }
                })
                .collect_view()}

        </Table>
    }
}

#[component]
fn AllowForm(
    notice: RwSignal<Option<String>>,
    failed: RwSignal<Option<String>>,
    reload: Callback<()>,
) -> impl IntoView {
    let entry = RwSignal::new(String::new());
    let allow = Submit::new(allow_model_host, move |host: ModelHost| {
        notice.set(Some(format!("{} allowed.", host.entry)));
        entry.set(String::new());
        reload.run(());
    });
    let (error, pending) = (allow.error, allow.pending());
    view! {
        <form
            aria-label="Allow a model host"
            class="mt-6 space-y-3 rounded-lg bg-white p-6 shadow"
            novalidate
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                notice.set(None);
                failed.set(None);
                allow.run(entry.get_untracked());
            }
        >
            <h2 class="text-lg font-semibold">"Allow a model host"</h2>
            <div>
                <label for="model-host-entry" class="block text-sm font-medium">"Host or URL prefix"</label>
                <input
                    id="model-host-entry"
                    aria-describedby="model-host-entry-error"
                    aria-invalid=invalid(error, "entry")
                    placeholder="models.example.com:8080"
                    class="mt-1 w-full max-w-md rounded border border-slate-300 px-3 py-1.5 font-mono text-sm"
                    bind:value=entry
                />
                <FieldError error=error field="entry" input="model-host-entry" />
            </div>
            <FormError error=error />
            <button
                type="submit"
                class=style::BUTTON_PRIMARY
                disabled=move || pending.get()
            >
                {move || if pending.get() { "Allowing…" } else { "Allow" }}
            </button>
        </form>
    }
}
