use leptos::prelude::*;
use leptos_router::{NavigateOptions, components::A, hooks::use_navigate};

use crate::api::get_topic;
use crate::components::Loaded;
use crate::domain::TopicDetails;

/// The sidesheet on the right of the connection details page: the topic's
/// details and the algorithms with access. Closes with Esc or Close.
#[component]
pub fn TopicSidesheet(connection_id: String, topic: String) -> impl IntoView {
    let navigate = use_navigate();
    let back = format!("/admin/queues/{connection_id}");
    let close = Callback::new(move |_: ()| {
        navigate(
            &back,
            NavigateOptions {
                scroll: false,
                ..Default::default()
            },
        )
    });
    let (id, name) = (connection_id.clone(), topic.clone());
    let details = LocalResource::new(move || get_topic(id.clone(), name.clone()));
    // A Service Bus subscription's path has '/' in it.
    let edit_href = format!(
        "/admin/queues/{connection_id}/topics/{}/edit",
        topic.replace('/', "%2F")
    );
    let panel = NodeRef::<leptos::html::Aside>::new();
    Effect::new(move |_| {
        if let Some(panel) = panel.get() {
            // On the next frame: a page that loads lazily is put on the
            // screen after its effects first run.
            request_animation_frame(move || {
                let _ = panel.focus();
            });
        }
    });

    // Esc closes it wherever the focus is (the page behind it may have
    // taken the focus back while it was put on the screen).
    let escape = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" {
            close.run(());
        }
    });
    on_cleanup(move || escape.remove());

    view! {
        <aside
            node_ref=panel
            role="region"
            aria-label=format!("Topic {topic}")
            tabindex="-1"
            class="fixed inset-y-0 right-0 z-30 w-full max-w-md overflow-y-auto border-l border-slate-200 bg-white p-6 shadow-xl outline-none"
        >
            <div class="flex items-start justify-between gap-2">
                <div>
                    <p class="text-xs uppercase tracking-wide text-slate-500">"Topic"</p>
                    <h2 class="break-all text-xl font-semibold">{topic.clone()}</h2>
                </div>
                <div class="flex gap-2">
                    <A
                        href=edit_href
                        attr:class="rounded bg-blue-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-blue-800"
                    >
                        "Edit"
                    </A>
                    <button
                        type="button"
                        aria-label="Close"
                        class="rounded border border-slate-300 px-3 py-1.5 text-sm hover:bg-slate-50"
                        on:click=move |_| close.run(())
                    >
                        "Close"
                    </button>
                </div>
            </div>
            <div class="mt-4">
                <Loaded value=details what="the topic" view=|d: TopicDetails| view! {
                    <dl class="grid grid-cols-2 gap-2 text-sm">
                        {match (d.topic.queue.clone(), d.topic.entity.clone()) {
                            (None, Some(e)) => view! {
                                <dt class="text-slate-500">"Type"</dt>
                                <dd>{format!("Service Bus {}", e.kind_label())}</dd>
                                <dt class="text-slate-500">"Active messages"</dt>
                                <dd>{e.active}</dd>
                                <dt class="text-slate-500">"Dead-lettered"</dt>
                                <dd>{e.dead_letter}</dd>
                                <dt class="text-slate-500">"Lock duration"</dt>
                                <dd>{format!("{} s", e.lock_duration_secs)}</dd>
                                <dt class="text-slate-500">"Max delivery count"</dt>
                                <dd>{e.max_delivery_count}</dd>
                            }
                            .into_any(),
                            (None, None) => view! {
                                <dt class="text-slate-500">"Partitions"</dt>
                                <dd>{d.topic.partitions}</dd>
                                <dt class="text-slate-500">"Replication factor"</dt>
                                <dd>{d.topic.replication_factor}</dd>
                                <dt class="text-slate-500">"Messages"</dt>
                                <dd>{d.topic.message_count}</dd>
                            }
                            .into_any(),
                            (Some(q), _) => view! {
                                <dt class="text-slate-500">"Type"</dt>
                                <dd>{if q.fifo { "FIFO queue" } else { "Standard queue" }}</dd>
                                <dt class="text-slate-500">"Visible messages"</dt>
                                <dd>{q.visible}</dd>
                                <dt class="text-slate-500">"In flight"</dt>
                                <dd>{q.in_flight}</dd>
                                <dt class="text-slate-500">"Delayed"</dt>
                                <dd>{q.delayed}</dd>
                                <dt class="text-slate-500">"Visibility timeout"</dt>
                                <dd>{format!("{} s", q.visibility_timeout_secs)}</dd>
                                <dt class="text-slate-500">"Redrive policy"</dt>
                                <dd>{q.redrive.unwrap_or_else(|| "none".into())}</dd>
                            }
                            .into_any(),
                        }}
                    </dl>
                    <h3 class="mt-6 font-semibold">"Algorithms with access"</h3>
                    {if d.grants.is_empty() {
                        view! {
                            <p class="mt-2 text-sm text-slate-600">
                                "No algorithm has access to this topic yet. Use Edit to add one."
                            </p>
                        }
                        .into_any()
                    } else {
                        view! {
                            <ul class="mt-2 divide-y divide-slate-100 text-sm" aria-label="Algorithms with access">
                                {d.grants
                                    .into_iter()
                                    .map(|g| view! {
                                        <li class="flex justify-between py-2">
                                            <span class="font-medium">{g.algorithm}</span>
                                            <span class="text-slate-600">{g.access.label()}</span>
                                        </li>
                                    })
                                    .collect_view()}
                            </ul>
                        }
                        .into_any()
                    }}
                } />
            </div>
        </aside>
    }
}
