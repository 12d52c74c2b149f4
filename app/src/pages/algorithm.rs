use leptos::prelude::*;

use crate::components::style;
use leptos_router::{components::A, hooks::use_params_map};

use crate::api::{add_version, get_algorithm};
use crate::components::{FieldError, FormError, Loaded, Submit, SuccessNotice, invalid};
use crate::domain::AlgorithmDetails;
use crate::pages::events::EventsTab;

/// Which tab of the algorithm page is open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Events,
}

/// An algorithm page with its tabs **Overview** and **Events**.
#[component]
pub fn AlgorithmPage(tab: Tab) -> impl IntoView {
    let params = use_params_map();
    let org = move || params.read().get("org").unwrap_or_default();
    let name = move || params.read().get("name").unwrap_or_default();
    let details = LocalResource::new(move || get_algorithm(org(), name()));
    // Outlives the reload that follows an added version.
    let added = RwSignal::new(None::<String>);

    view! {
        <A href="/catalog" attr:class="text-sm text-blue-700 hover:underline">"← ML service catalog"</A>
        <Loaded
            value=details
            what="the algorithm"
            not_found=move || view! {
                <h1 class="mt-2 text-xl font-semibold">"Algorithm not found"</h1>
                <p class="mt-2">
                    {format!("There is no algorithm {}/{} in your organizations.", org(), name())}
                </p>
            }
            view=move |d| {
                let base = format!("/algorithms/{}/{}", d.org, d.name);
                let tab_class = |active: bool| {
                    if active {
                        "border-b-2 border-blue-700 px-4 py-2 font-medium text-blue-700"
                    } else {
                        "px-4 py-2 text-slate-600 hover:text-slate-900"
                    }
                };
                view! {
                    <h1 class="mt-2 text-2xl font-semibold">{format!("{}/{}", d.org, d.name)}</h1>
                    <p class="mt-1 text-slate-600">{d.description.clone()}</p>
                    // Two pages of the algorithm, as links: the one shown has
                    // aria-current="page" (set by <A> on an exact match).
                    <nav aria-label="Algorithm" class="mt-6 flex gap-2 border-b border-slate-200">
                        <A href=base.clone() exact=true attr:class=tab_class(tab == Tab::Overview)>
                            "Overview"
                        </A>
                        <A href=format!("{base}/events") exact=true attr:class=tab_class(tab == Tab::Events)>
                            "Events"
                        </A>
                    </nav>
                    <div class="mt-6">
                        {match tab {
                            Tab::Overview => view! {
                                <Overview details=d added=added reload=Callback::new(move |_| details.refetch()) />
                            }
                            .into_any(),
                            // The Events tab is most of the UI's code: it
                            // loads when it is opened.
                            Tab::Events => view! {
                                <Suspense fallback=|| ()>
                                    {Suspend::new(async move { events_tab(d).await })}
                                </Suspense>
                            }
                            .into_any(),
                        }}
                    </div>
                }
            }
        />
    }
}

#[component]
fn Overview(
    details: AlgorithmDetails,
    added: RwSignal<Option<String>>,
    reload: Callback<()>,
) -> impl IntoView {
    view! {
        <section aria-labelledby="versions-title" class="rounded-lg bg-white p-6 shadow">
            <h2 id="versions-title" class="text-lg font-semibold">"Versions"</h2>
            {if details.versions.is_empty() {
                view! { <p class="mt-2 text-slate-600">"No versions yet."</p> }.into_any()
            } else {
                view! {
                    <table class="mt-2 w-full text-left text-sm">
                        <thead class="text-slate-500">
                            <tr>
                                <th scope="col" class="py-2">"Version"</th>
                                <th scope="col" class="py-2">"Runtime"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {details
                                .versions
                                .iter()
                                .map(|v| view! {
                                    <tr class="border-t border-slate-100">
                                        <td class="py-2 font-medium">{v.version.clone()}</td>
                                        <td class="py-2 font-mono text-xs">{v.runtime.clone()}</td>
                                    </tr>
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
        // Whoever sees an algorithm (a member of its organization, or an
        // admin) may add versions and change its flows.
        <AddVersionForm org=details.org.clone() name=details.name.clone() added=added reload=reload />
    }
}

#[component]
fn AddVersionForm(
    org: String,
    name: String,
    added: RwSignal<Option<String>>,
    reload: Callback<()>,
) -> impl IntoView {
    let version = RwSignal::new(String::new());
    let runtime = RwSignal::new(String::new());
    let add = Submit::new(
        move |(v, r): (String, String)| add_version(org.clone(), name.clone(), v, r),
        move |()| {
            added.set(Some(format!(
                "Version {} added.",
                version.get_untracked().trim()
            )));
            reload.run(());
        },
    );
    let (error, pending) = (add.error, add.pending());
    view! {
        <form
            aria-label="Add version"
            class="mt-6 space-y-3 rounded-lg bg-white p-6 shadow"
            novalidate
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                added.set(None);
                add.run((version.get_untracked(), runtime.get_untracked()));
            }
        >
            <h2 class="text-lg font-semibold">"Add version"</h2>
            {move || added.get().map(|m| view! { <SuccessNotice message=m /> })}
            <div>
                <label for="new-version" class="block text-sm font-medium">"Version"</label>
                <input id="new-version" aria-describedby="new-version-error" aria-invalid=invalid(error, "version") placeholder="1.2.0" class="mt-1 rounded border border-slate-300 px-3 py-1.5" bind:value=version />
                <FieldError error=error field="version" input="new-version" />
            </div>
            <div>
                <label for="new-runtime" class="block text-sm font-medium">"Runtime"</label>
                <input
                    id="new-runtime"
                    aria-describedby="new-runtime-error"
                    aria-invalid=invalid(error, "runtime")
                    placeholder="builtin:sentiment or http:http://model:8080/predict"
                    class="mt-1 w-full max-w-md rounded border border-slate-300 px-3 py-1.5"
                    bind:value=runtime
                />
                <FieldError error=error field="runtime" input="new-runtime" />
            </div>
            <FormError error=error />
            <button
                type="submit"
                class=style::BUTTON_PRIMARY
                disabled=move || pending.get()
            >
                {move || if pending.get() { "Adding…" } else { "Add version" }}
            </button>
        </form>
    }
}

#[lazy]
fn events_tab(details: AlgorithmDetails) -> AnyView {
    view! { <EventsTab details=details /> }.into_any()
}
