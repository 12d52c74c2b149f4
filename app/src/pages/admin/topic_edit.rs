use leptos::prelude::*;

use crate::components::style;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_params_map},
};

use crate::api::{get_topic, list_algorithm_names, save_topic_grants};
use crate::components::{ErrorNotice, Loaded, Submit};
use crate::domain::{Access, TopicDetails, TopicGrant};

/// The topic edit page: add algorithms, choose each one's access, remove
/// them; **Save changes** saves all of it at once and returns to the
/// connection details page. Leaving without saving changes nothing.
#[component]
pub fn TopicEditPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let topic = move || {
        params
            .read()
            .get("topic")
            .unwrap_or_default()
            .replace("%2F", "/")
            .replace("%2f", "/")
    };
    // The topic with its grants, and every algorithm that could be granted.
    let both = LocalResource::new(move || {
        let (details, all) = (get_topic(id(), topic()), list_algorithm_names());
        async move { Ok((details.await?, all.await?)) }
    });

    view! {
        <Loaded value=both what="the topic" view=|(details, all)| view! { <Editor details=details all=all /> } />
    }
}

#[component]
fn Editor(details: TopicDetails, all: Vec<String>) -> impl IntoView {
    let navigate = use_navigate();
    let back = format!("/admin/queues/{}", details.connection_id);
    let grants = RwSignal::new(details.grants.clone());
    let search = RwSignal::new(String::new());
    let (connection_id, topic) = (details.connection_id.clone(), details.topic.name.clone());

    let done = back.clone();
    let save = Submit::new(
        move |grants: Vec<TopicGrant>| {
            save_topic_grants(connection_id.clone(), topic.clone(), grants)
        },
        move |()| navigate(&done, NavigateOptions::default()),
    );
    let (error, pending) = (save.error, save.pending());

    let candidates = move || {
        let needle = search.get().trim().to_lowercase();
        let taken: Vec<String> = grants.with(|g| g.iter().map(|g| g.algorithm.clone()).collect());
        all.iter()
            .filter(|a| !taken.contains(a))
            .filter(|a| needle.is_empty() || a.to_lowercase().contains(&needle))
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
    };
    let set_access = move |algorithm: String, subscribe: Option<bool>, publish: Option<bool>| {
        grants.update(|list| {
            if let Some(g) = list.iter_mut().find(|g| g.algorithm == algorithm) {
                if let Some(s) = subscribe {
                    g.access.subscribe = s;
                }
                if let Some(p) = publish {
                    g.access.publish = p;
                }
            }
        })
    };

    view! {
        <A href=back.clone() attr:class="text-sm text-blue-700 hover:underline">
            {format!("← {}", details.connection_name)}
        </A>
        <h1 class="mt-2 text-2xl font-semibold">{format!("Edit topic {}", details.topic.name)}</h1>
        <p class="mt-1 text-slate-600">"Choose which algorithms may subscribe to or publish on this topic."</p>

        <section aria-labelledby="access-title" class="mt-6 rounded-lg bg-white p-6 shadow">
            <h2 id="access-title" class="text-lg font-semibold">"Algorithms with access"</h2>
            {move || {
                let list = grants.get();
                if list.is_empty() {
                    return view! { <p class="mt-2 text-sm text-slate-600">"No algorithm has access. Add one below."</p> }.into_any();
                }
                view! {
                    <table class="mt-2 w-full text-left text-sm">
                        <thead class="text-slate-500">
                            <tr>
                                <th scope="col" class="py-2">"Algorithm"</th>
                                <th scope="col" class="py-2">"Subscribe"</th>
                                <th scope="col" class="py-2">"Publish"</th>
                                <th scope="col" class="py-2"><span class="sr-only">"Actions"</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            {list
                                .into_iter()
                                .map(|g| {
                                    let (a1, a2, a3) = (g.algorithm.clone(), g.algorithm.clone(), g.algorithm.clone());
                                    view! {
                                        <tr class="border-t border-slate-100">
                                            <td class="py-2 font-medium">{g.algorithm.clone()}</td>
                                            <td class="py-2">
                                                <input
                                                    type="checkbox"
                                                    aria-label=format!("Subscribe: {}", g.algorithm)
                                                    prop:checked=g.access.subscribe
                                                    on:change=move |ev| set_access(a1.clone(), Some(event_target_checked(&ev)), None)
                                                />
                                            </td>
                                            <td class="py-2">
                                                <input
                                                    type="checkbox"
                                                    aria-label=format!("Publish: {}", g.algorithm)
                                                    prop:checked=g.access.publish
                                                    on:change=move |ev| set_access(a2.clone(), None, Some(event_target_checked(&ev)))
                                                />
                                            </td>
                                            <td class="py-2 text-right">
                                                <button
                                                    type="button"
                                                    class="text-red-700 hover:underline"
                                                    aria-label=format!("Remove {}", g.algorithm)
                                                    on:click=move |_| grants.update(|l| l.retain(|x| x.algorithm != a3))
                                                >
                                                    "Remove"
                                                </button>
                                            </td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>

        <section aria-labelledby="add-title" class="mt-6 rounded-lg bg-white p-6 shadow">
            <h2 id="add-title" class="text-lg font-semibold">"Add algorithm"</h2>
            <label for="algorithm-search" class="mt-2 block text-sm font-medium">"Search algorithms"</label>
            <input
                id="algorithm-search"
                type="search"
                placeholder="org/name"
                class=style::INPUT
                bind:value=search
            />
            <ul class="mt-2 divide-y divide-slate-100 text-sm" aria-label="Matching algorithms">
                {move || {
                    let found = candidates();
                    if found.is_empty() {
                        return view! { <li class="py-2 text-slate-500">"No algorithm matches."</li> }.into_any();
                    }
                    found
                        .into_iter()
                        .map(|a| {
                            let add = a.clone();
                            view! {
                                <li class="flex items-center justify-between py-2">
                                    <span>{a.clone()}</span>
                                    <button
                                        type="button"
                                        class="rounded border border-slate-300 px-3 py-1 hover:bg-slate-50"
                                        aria-label=format!("Add {a}")
                                        on:click=move |_| grants.update(|l| l.push(TopicGrant {
                                            algorithm: add.clone(),
                                            access: Access { subscribe: true, publish: false },
                                        }))
                                    >
                                        "Add"
                                    </button>
                                </li>
                            }
                        })
                        .collect_view()
                        .into_any()
                }}
            </ul>
        </section>

        {move || error.get().map(|e| view! { <div class="mt-4"><ErrorNotice message=e.to_string() /></div> })}
        <div class="mt-6 flex items-center gap-3">
            <button
                type="button"
                class="rounded bg-blue-700 px-4 py-2 font-medium text-white hover:bg-blue-800 disabled:opacity-60"
                disabled=move || pending.get()
                on:click=move |_| save.run(grants.get_untracked())
            >
                {move || if pending.get() { "Saving…" } else { "Save changes" }}
            </button>
            <A href=back attr:class="text-slate-600 hover:underline">"Cancel"</A>
        </div>
    }
}
