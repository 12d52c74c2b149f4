use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::list_catalog;
use crate::components::Listing;

/// **ML service catalog**: the algorithms of the user's organizations
/// (every algorithm for an admin), searchable.
#[component]
pub fn CatalogPage() -> impl IntoView {
    let algorithms = LocalResource::new(list_catalog);
    let search = RwSignal::new(String::new());

    view! {
        <h1 class="text-2xl font-semibold">"ML service catalog"</h1>
        <p class="mt-1 text-slate-600">"Algorithms of your organizations."</p>
        <label for="catalog-search" class="mt-6 block text-sm font-medium">"Search algorithms"</label>
        <input
            id="catalog-search"
            type="search"
            placeholder="Name, organization or description"
            class="mt-1 w-full max-w-md rounded border border-slate-300 px-3 py-2"
            bind:value=search
        />
        <section class="mt-6" aria-label="Algorithms">
            <Listing list=algorithms what="algorithms"
                empty="No algorithms yet."
                hint="Algorithms are added with `eventflows algorithm add`."
                view=move |list| {
                    let needle = search.get().trim().to_lowercase();
                    let found: Vec<_> = list
                        .into_iter()
                        .filter(|a| {
                            needle.is_empty()
                                || format!("{}/{} {}", a.org, a.name, a.description)
                                    .to_lowercase()
                                    .contains(&needle)
                        })
                        .collect();
                    if found.is_empty() {
                        return view! { <p class="text-slate-600">"No algorithm matches your search."</p> }.into_any();
                    }
                    view! {
                        <ul class="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
                            {found
                                .into_iter()
                                .map(|a| {
                                    let href = format!("/algorithms/{}/{}", a.org, a.name);
                                    view! {
                                        <li class="rounded-lg bg-white p-4 shadow">
                                            <A href=href attr:class="text-lg font-semibold text-blue-700 hover:underline">
                                                {format!("{}/{}", a.org, a.name)}
                                            </A>
                                            <p class="mt-1 text-sm text-slate-600">{a.description}</p>
                                            <p class="mt-2 text-xs text-slate-500">
                                                {match a.latest_version {
                                                    Some(v) => format!("Latest version {v}"),
                                                    None => "No versions yet".to_owned(),
                                                }}
                                            </p>
                                        </li>
                                    }
                                })
                                .collect_view()}
                        </ul>
                    }
                    .into_any()
                }
            />
        </section>
    }
}
