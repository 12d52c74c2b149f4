use std::time::Duration;

use leptos::prelude::*;

use crate::components::style;

use super::dead_letters::{DeadLetters, Replays, TryVersion};
use super::rewind::PauseControls;
use crate::api::{disable_flow, get_flow_stats, list_events, save_flow};
use crate::components::{
    ConfirmActions, Dialog, ErrorNotice, Listing, Loaded, Submit, SuccessNotice, Table,
};
use crate::domain::{
    AlgorithmDetails, AppError, Batching, BrokerKind, DEFAULT_BATCH_SIZE, Direction, FlowOrdering,
    FlowRequest, FlowStats, GIVE_BACK_HELP, GrantedTopic, MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS,
    MAX_CONCURRENCY, QueuedMessage, Runtime,
};

/// The Version choice of a publish flow that follows the listener.
const FOLLOW: &str = "listener";

/// Which dialog is open on the Events tab.
#[derive(Clone)]
enum Open {
    Enable(GrantedTopic),
    Disable(GrantedTopic),
}

/// The **Events** tab: every topic the algorithm has a grant on, with
/// **Enable**, or **Disable** and **Edit**, and the live view of each flow.
#[component]
pub fn EventsTab(details: AlgorithmDetails) -> impl IntoView {
    let (org, name) = (details.org.clone(), details.name.clone());
    let rows = LocalResource::new({
        let (org, name) = (org.clone(), name.clone());
        move || list_events(org.clone(), name.clone())
    });
    let open = RwSignal::new(None::<Open>);
    let watching = RwSignal::new(None::<(String, String)>);
    let notice = RwSignal::new(None::<String>);
    let versions: Vec<String> = details.versions.iter().map(|v| v.version.clone()).collect();
    // Versions whose model takes batches of inputs (runtime http-batch:).
    let batch_versions: Vec<String> = details
        .versions
        .iter()
        .filter(|v| Runtime::parse(&v.runtime).is_ok_and(|r| r.takes_batches()))
        .map(|v| v.version.clone())
        .collect();
    let done = Callback::new(move |message: String| {
        open.set(None);
        notice.set(Some(message));
        rows.refetch();
    });

    view! {
        {move || notice.get().map(|m| view! { <div class="mb-4"><SuccessNotice message=m /></div> })}
        <Listing list=rows what="topics"
            empty="This algorithm has no access to any topic yet."
            hint="A cluster admin grants access in the Queue manager."
            view=move |list| view! {
                <Table columns=&["Broker", "Topic", "Access", "State", "Version", "DLQ", "Ordering", "Actions"] right=1>
                    {list
                        .into_iter()
                        .map(|row| view! { <Row row=row open=open watching=watching /> })
                        .collect_view()}

                </Table>
            }
        />
        {
            let versions = versions.clone();
            move || watching.get().map(|(id, label)| {
                let flow = id.clone();
                // Edit, with the tried version chosen.
                let on_use_version = Callback::new(move |version: String| {
                    if let Some(Ok(list)) = rows.get_untracked()
                        && let Some(mut row) = list
                            .into_iter()
                            .find(|r| r.flow.as_ref().is_some_and(|f| f.id == flow))
                    {
                        if let Some(f) = row.flow.as_mut() {
                            f.version = version;
                        }
                        open.set(Some(Open::Enable(row)));
                    }
                });
                view! {
                    <FlowMonitor
                        flow_id=id
                        label=label
                        versions=versions.clone()
                        on_change=Callback::new(move |_| rows.refetch())
                        on_use_version=on_use_version
                    />
                }
            })
        }
        {
            let (org, name, versions) = (org.clone(), name.clone(), versions.clone());
            move || match open.get() {
                Some(Open::Enable(row)) => view! {
                    <EnableDialog
                        org=org.clone()
                        name=name.clone()
                        row=row
                        versions=versions.clone()
                        batch_versions=batch_versions.clone()
                        publishing=match rows.get_untracked() {
                            Some(Ok(list)) => list
                                .into_iter()
                                .filter(|r| r.direction == Direction::Publish && r.enabled())
                                .collect(),
                            _ => Vec::new(),
                        }
                        on_close=Callback::new(move |_| open.set(None))
                        on_done=done
                    />
                }
                .into_any(),
                Some(Open::Disable(row)) => view! {
                    <DisableDialog
                        org=org.clone()
                        name=name.clone()
                        row=row
                        on_close=Callback::new(move |_| open.set(None))
                        on_done=done
                    />
                }
                .into_any(),
                None => ().into_any(),
            }
        }
    }
}

#[component]
fn Row(
    row: GrantedTopic,
    open: RwSignal<Option<Open>>,
    watching: RwSignal<Option<(String, String)>>,
) -> impl IntoView {
    let enabled = row.enabled();
    let flow = row.flow.clone();
    let label = format!("{} on {}", row.direction.label(), row.topic);
    let (r1, r2, r3) = (row.clone(), row.clone(), row.clone());
    view! {
        <tr class="border-t border-slate-100">
            <td class="px-4 py-2">{row.connection_name.clone()}</td>
            <td class="px-4 py-2 font-medium">{row.topic.clone()}</td>
            <td class="px-4 py-2">{row.direction.label()}</td>
            <td class="px-4 py-2">
                {if enabled && flow.as_ref().is_some_and(|f| f.paused) {
                    view! { <span class="rounded-full bg-amber-100 px-2 py-0.5 text-xs font-medium text-amber-800">"Paused"</span> }.into_any()
                } else if enabled {
                    view! { <span class="rounded-full bg-green-100 px-2 py-0.5 text-xs font-medium text-green-800">"Enabled"</span> }.into_any()
                } else {
                    view! { <span class="rounded-full bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-700">"Disabled"</span> }.into_any()
                }}
            </td>
            <td class="px-4 py-2">
                {flow
                    .as_ref()
                    .filter(|_| enabled)
                    .map(|f| if f.follows_subscribe_flow { "the listener's".to_owned() } else { f.version.clone() })
                    .unwrap_or_else(|| "–".into())}
            </td>
            <td class="px-4 py-2">
                {flow.as_ref().filter(|_| enabled).and_then(|f| f.dlq_topic.clone()).unwrap_or_else(|| "–".into())}
            </td>
            <td class="px-4 py-2">
                {flow
                    .as_ref()
                    .filter(|_| enabled && row.direction == Direction::Subscribe)
                    .map(|f| {
                        let mut summary = f.ordering.summary(f.concurrency);
                        if let Some(batches) = f.batching.summary() {
                            summary = format!("{summary}; {batches}");
                        }
                        if f.give_back {
                            summary.push_str("; gives back on transient failures");
                        }
                        summary
                    })
                    .unwrap_or_else(|| "–".into())}
            </td>
            <td class="px-4 py-2 text-right whitespace-nowrap">
                {(enabled && row.direction == Direction::Subscribe).then(|| {
                    let id = flow.as_ref().map(|f| f.id.clone()).unwrap_or_default();
                    let label = label.clone();
                    view! {
                        <button
                            type="button"
                            class="mr-2 text-blue-700 hover:underline"
                            aria-label=format!("Monitor {label}")
                            on:click=move |_| watching.set(Some((id.clone(), label.clone())))
                        >
                            "Monitor"
                        </button>
                    }
                })}
                {if enabled {
                    view! {
                        <button
                            type="button"
                            class="mr-2 rounded border border-slate-300 px-3 py-1 hover:bg-slate-50"
                            aria-label=format!("Disable {label}")
                            on:click=move |_| open.set(Some(Open::Disable(r1.clone())))
                        >
                            "Disable"
                        </button>
                        <button
                            type="button"
                            class="rounded bg-blue-700 px-3 py-1 text-white hover:bg-blue-800"
                            aria-label=format!("Edit {label}")
                            on:click=move |_| open.set(Some(Open::Enable(r2.clone())))
                        >
                            "Edit"
                        </button>
                    }
                    .into_any()
                } else {
                    view! {
                        <button
                            type="button"
                            class="rounded bg-blue-700 px-3 py-1 text-white hover:bg-blue-800"
                            aria-label=format!("Enable {label}")
                            on:click=move |_| open.set(Some(Open::Enable(r3.clone())))
                        >
                            "Enable"
                        </button>
                    }
                    .into_any()
                }}
            </td>
        </tr>
    }
}

#[component]
fn EnableDialog(
    org: String,
    name: String,
    row: GrantedTopic,
    versions: Vec<String>,
    batch_versions: Vec<String>,
    /// The algorithm's enabled publish flows: where a version's outputs go.
    publishing: Vec<GrantedTopic>,
    on_close: Callback<()>,
    on_done: Callback<String>,
) -> impl IntoView {
    let editing = row.enabled();
    let current = row.flow.clone().filter(|f| f.enabled);
    let publish_row = row.direction == Direction::Publish;
    // A publish flow follows the listener's version unless it keeps one.
    let version = RwSignal::new(match &current {
        Some(f) if publish_row && f.follows_subscribe_flow => FOLLOW.to_owned(),
        Some(f) => f.version.clone(),
        None if publish_row => FOLLOW.to_owned(),
        None => versions.first().cloned().unwrap_or_default(),
    });
    // Where the chosen version's outputs go, for a subscribe flow.
    let outputs_go = move || {
        let chosen = version.get();
        let topics: Vec<String> = publishing
            .iter()
            .filter(|r| {
                r.flow
                    .as_ref()
                    .is_some_and(|f| f.enabled && (f.follows_subscribe_flow || f.version == chosen))
            })
            .map(|r| format!("{} ({})", r.topic, r.connection_name))
            .collect();
        if topics.is_empty() {
            format!("Version {chosen} publishes nowhere: no publish flow takes its outputs.")
        } else {
            format!("Version {chosen} publishes to {}.", topics.join(", "))
        }
    };
    let use_dlq = RwSignal::new(current.as_ref().is_some_and(|f| f.dlq_topic.is_some()));
    let give_back = RwSignal::new(current.as_ref().is_some_and(|f| f.give_back));
    let reads_a_queue = row.connection_kind.is_queue();
    // A FIFO queue keeps each group in order, which a message given back
    // would break.
    let may_give_back =
        reads_a_queue && !(row.connection_kind == BrokerKind::Sqs && row.topic.ends_with(".fifo"));
    let dlq = RwSignal::new(
        current
            .as_ref()
            .and_then(|f| f.dlq_topic.clone())
            .or_else(|| row.dlq_options.first().cloned())
            .unwrap_or_default(),
    );
    let ordering = RwSignal::new(current.as_ref().map(|f| f.ordering).unwrap_or_default());
    let concurrency = RwSignal::new(
        current
            .as_ref()
            .map(|f| f.concurrency)
            .unwrap_or(1)
            .to_string(),
    );
    // A new ordering starts from its own default bound.
    let choose_ordering = move |value: String| {
        let chosen = FlowOrdering::parse(&value).unwrap_or_default();
        ordering.set(chosen);
        concurrency.set(chosen.default_concurrency().to_string());
    };
    let concurrency_error = move || {
        let chosen = ordering.get();
        match concurrency.get().trim().parse::<u32>() {
            Ok(n) => chosen.check_concurrency(n).err(),
            Err(_) => Some(format!(
                "Concurrent runs per partition must be a whole number between 1 and {MAX_CONCURRENCY}."
            )),
        }
    };
    // Batches, for versions whose model takes them.
    let batches = {
        let batch_versions = batch_versions.clone();
        move || batch_versions.contains(&version.get())
    };
    let current_batching = current.as_ref().map(|f| f.batching);
    // A flow on a version that takes batches keeps its own size (1
    // included); otherwise a batch-capable version starts from 32.
    let batch_size = RwSignal::new(
        current
            .as_ref()
            .filter(|f| batch_versions.contains(&f.version))
            .map_or(DEFAULT_BATCH_SIZE, |f| f.batching.size)
            .to_string(),
    );
    let batch_wait = RwSignal::new(current_batching.unwrap_or_default().wait_ms.to_string());
    let batch_error = {
        let batches = batches.clone();
        move || {
            if !batches() {
                return None;
            }
            let (Ok(size), Ok(wait_ms)) = (
                batch_size.get().trim().parse::<u32>(),
                batch_wait.get().trim().parse::<u32>(),
            ) else {
                return Some(format!(
                    "Batch size is a whole number from 1 to {MAX_BATCH_SIZE}; batch wait from 0 to {MAX_BATCH_WAIT_MS} ms."
                ));
            };
            Batching { size, wait_ms }.check(true).err().map(|(_, m)| m)
        }
    };
    let topic = row.topic.clone();
    let save = Submit::new(save_flow, move |()| {
        on_done.run(if editing {
            format!("Changes to the listener on {topic} saved.")
        } else {
            format!("Listener on {topic} enabled.")
        })
    });
    let (error, pending) = (save.error, save.pending());
    let subscribe = row.direction == Direction::Subscribe;
    let options = row.dlq_options.clone();
    let no_options = options.is_empty();
    let submit_row = row.clone();
    let first_version = versions.first().cloned().unwrap_or_default();
    let submit_batches = batches.clone();
    let batch_error_shown = batch_error.clone();
    let batch_error_invalid = batch_error.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if subscribe && let Some(message) = concurrency_error().or_else(&batch_error) {
            error.set(Some(AppError::validation("flow", message)));
            return;
        }
        let batched = subscribe && submit_batches();
        save.run(FlowRequest {
            org: org.clone(),
            name: name.clone(),
            connection_id: submit_row.connection_id.clone(),
            topic: submit_row.topic.clone(),
            direction: submit_row.direction,
            version: match version.get_untracked() {
                v if v == FOLLOW => first_version.clone(),
                v => v,
            },
            follows_subscribe_flow: !subscribe && version.get_untracked() == FOLLOW,
            dlq_topic: (subscribe && use_dlq.get_untracked()).then(|| dlq.get_untracked()),
            give_back: subscribe && may_give_back && give_back.get_untracked(),
            ordering: if subscribe {
                ordering.get_untracked()
            } else {
                FlowOrdering::Partition
            },
            concurrency: subscribe
                .then(|| concurrency.get_untracked().trim().parse().ok())
                .flatten(),
            batch_size: Some(if batched {
                batch_size.get_untracked().trim().parse().unwrap_or(1)
            } else {
                1
            }),
            batch_wait_ms: batched
                .then(|| batch_wait.get_untracked().trim().parse().ok())
                .flatten(),
        });
    };
    let title = if editing {
        "Edit listener"
    } else {
        "Enable listener"
    };
    view! {
        <Dialog title=title.to_owned() on_close=on_close>
            <form on:submit=submit class="space-y-4" novalidate>
                <p class="text-sm text-slate-600">
                    {format!("{} on topic {} ({})", row.direction.label(), row.topic, row.connection_name)}
                </p>
                <div>
                    <label for="flow-version" class="block text-sm font-medium">"Version"</label>
                    <select id="flow-version" class=style::INPUT bind:value=version>
                        {(!subscribe).then(|| view! { <option value=FOLLOW>"The listener's version"</option> })}
                        {versions.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                    </select>
                    {if subscribe {
                        view! { <p class="mt-1 text-xs text-slate-600" data-testid="outputs-go">{outputs_go}</p> }.into_any()
                    } else {
                        view! {
                            <p class="mt-1 text-xs text-slate-600">
                                "With the listener's version, this topic keeps getting the outputs when a listener moves to another version (and those of replays)."
                            </p>
                        }
                        .into_any()
                    }}
                </div>
                {subscribe.then(|| view! {
                    <div>
                        <label class="inline-flex items-center gap-2 text-sm font-medium">
                            <input type="checkbox" bind:checked=use_dlq />
                            "Enable Dead Letter Queue"
                        </label>
                    </div>
                    <Show when=move || use_dlq.get()>
                        {if no_options {
                            view! {
                                <p class="text-sm text-amber-800">
                                    "No topic can serve as Dead Letter Queue: an admin must give this algorithm Publish access to another topic of this broker."
                                </p>
                            }
                            .into_any()
                        } else {
                            let options = options.clone();
                            view! {
                                <div>
                                    <label for="flow-dlq" class="block text-sm font-medium">"Dead Letter Queue topic"</label>
                                    <select id="flow-dlq" class=style::INPUT bind:value=dlq>
                                        {options.iter().map(|t| view! { <option value=t.clone()>{t.clone()}</option> }).collect_view()}
                                    </select>
                                </div>
                            }
                            .into_any()
                        }}
                    </Show>
                    <details class="rounded border border-slate-200 p-3">
                        <summary class="cursor-pointer text-sm font-medium">"Advanced"</summary>
                        <div class="mt-3 space-y-3">
                            {may_give_back.then(|| view! {
                                <div>
                                    <label class="inline-flex items-center gap-2 text-sm font-medium">
                                        <input
                                            id="flow-give-back"
                                            type="checkbox"
                                            aria-describedby="flow-give-back-help"
                                            bind:checked=give_back
                                        />
                                        "Give messages back to the queue on a transient failure"
                                    </label>
                                    <p id="flow-give-back-help" class="mt-1 text-xs text-slate-600">{GIVE_BACK_HELP}</p>
                                </div>
                            })}
                            <div>
                                <label for="flow-ordering" class="block text-sm font-medium">"Ordering"</label>
                                <select
                                    id="flow-ordering"
                                    class=style::INPUT
                                    aria-describedby="flow-ordering-help"
                                    prop:value=move || ordering.get().as_str()
                                    on:change=move |ev| choose_ordering(event_target_value(&ev))
                                >
                                    {FlowOrdering::ALL.into_iter().map(|o| view! {
                                        <option value=o.as_str() selected=move || ordering.get() == o>{o.label()}</option>
                                    }).collect_view()}
                                </select>
                                <p id="flow-ordering-help" class="mt-1 text-xs text-slate-600">{move || ordering.get().explain()}</p>
                            </div>
                            <div>
                                <label for="flow-concurrency" class="block text-sm font-medium">"Concurrent runs per partition"</label>
                                <input
                                    id="flow-concurrency"
                                    type="number"
                                    min="1"
                                    max=MAX_CONCURRENCY.to_string()
                                    class="mt-1 w-32 rounded border border-slate-300 px-3 py-2"
                                    aria-describedby="flow-concurrency-help"
                                    aria-invalid=move || concurrency_error().is_some().to_string()
                                    disabled=move || ordering.get() == FlowOrdering::Partition
                                    bind:value=concurrency
                                />
                                <p id="flow-concurrency-help" class="mt-1 text-xs text-slate-600">
                                    {move || concurrency_error().unwrap_or_else(|| {
                                        "How many of a partition's messages may run at once (for model servers that take many requests).".into()
                                    })}
                                </p>
                            </div>
                            <Show when=batches.clone()>
                                <div class="flex gap-4">
                                    <div>
                                        <label for="flow-batch-size" class="block text-sm font-medium">"Batch size"</label>
                                        <input
                                            id="flow-batch-size"
                                            type="number"
                                            min="1"
                                            max=MAX_BATCH_SIZE.to_string()
                                            class="mt-1 w-32 rounded border border-slate-300 px-3 py-2"
                                            aria-describedby="flow-batch-help"
                                            aria-invalid={
                                                let invalid = batch_error_invalid.clone();
                                                move || invalid().is_some().to_string()
                                            }
                                            bind:value=batch_size
                                        />
                                    </div>
                                    <div>
                                        <label for="flow-batch-wait" class="block text-sm font-medium">"Batch wait (ms)"</label>
                                        <input
                                            id="flow-batch-wait"
                                            type="number"
                                            min="0"
                                            max=MAX_BATCH_WAIT_MS.to_string()
                                            class="mt-1 w-32 rounded border border-slate-300 px-3 py-2"
                                            aria-describedby="flow-batch-help"
                                            bind:value=batch_wait
                                        />
                                    </div>
                                </div>
                                <p id="flow-batch-help" class="mt-1 text-xs text-slate-600">
                                    {
                                        let shown = batch_error_shown.clone();
                                        move || shown().unwrap_or_else(|| {
                                            "This version's model takes batches: up to this many messages of a partition go in one request, waiting at most this long for a batch to fill.".into()
                                        })
                                    }
                                </p>
                            </Show>
                        </div>
                    </details>
                })}
                {move || error.get().map(|e| view! { <ErrorNotice message=e.to_string() /> })}
                <div class="flex justify-end gap-3 pt-2">
                    <button type="button" class=style::BUTTON_SECONDARY on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class=style::BUTTON_PRIMARY
                        disabled=move || pending.get()
                    >
                        {move || match (pending.get(), editing) {
                            (true, _) => "Saving…",
                            (false, true) => "Save Changes",
                            (false, false) => "Enable Listener",
                        }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

#[component]
fn DisableDialog(
    org: String,
    name: String,
    row: GrantedTopic,
    on_close: Callback<()>,
    on_done: Callback<String>,
) -> impl IntoView {
    let target = row.clone();
    let topic = row.topic.clone();
    let disable = Submit::new(
        move |()| {
            disable_flow(
                org.clone(),
                name.clone(),
                target.connection_id.clone(),
                target.topic.clone(),
                target.direction,
            )
        },
        move |()| on_done.run(format!("Listener on {topic} disabled.")),
    );
    let what = match row.direction {
        Direction::Subscribe => format!(
            "Messages on {} will no longer be processed by this algorithm.",
            row.topic
        ),
        Direction::Publish => format!(
            "This algorithm's results will no longer be sent to {}.",
            row.topic
        ),
    };
    view! {
        <Dialog title="Disable listener?".to_owned() on_close=on_close>
            <p>{what}</p>
            <p class="mt-2 text-sm text-slate-600">"Messages already being processed are finished first."</p>
            <ConfirmActions submit=disable label="Disable" busy="Disabling…" on_cancel=on_close />
        </Dialog>
    }
}

/// The debugging view of one flow, refreshed every two seconds while open.
#[component]
fn FlowMonitor(
    flow_id: String,
    label: String,
    versions: Vec<String>,
    /// Called after the flow was paused or resumed.
    on_change: Callback<()>,
    /// Opens the Edit dialog with this version chosen.
    on_use_version: Callback<String>,
) -> impl IntoView {
    let selected = RwSignal::new(std::collections::BTreeSet::<String>::new());
    let id = flow_id.clone();
    let stats = LocalResource::new(move || get_flow_stats(id.clone()));
    if let Ok(handle) = set_interval_with_handle(move || stats.refetch(), Duration::from_secs(2)) {
        on_cleanup(move || handle.clear());
    }
    let last = RwSignal::new(None::<FlowStats>);
    Effect::new(move |_| {
        if let Some(Ok(s)) = stats.get() {
            last.set(Some(s));
        }
    });
    // The dead letters are read again when new ones may have come, or a
    // replay ended.
    let changed = Memo::new(move |_| {
        last.with(|s| {
            s.as_ref().map_or(0, |s| {
                s.dead_lettered as usize
                    + s.failures_kept as usize
                    + s.failures_dropped as usize
                    + s.replays.iter().filter(|r| r.state != "running").count()
            })
        })
    });
    view! {
        <section aria-label=format!("Flow {label}") class="mt-6 rounded-lg bg-white p-6 shadow">
            <div class="flex items-center justify-between gap-2">
                <h2 class="text-lg font-semibold">{format!("Flow: {label}")}</h2>
                <PauseControls
                    flow_id=flow_id.clone()
                    paused=Signal::derive(move || last.with(|s| s.as_ref().map(|s| s.paused)))
                    on_change=Callback::new(move |_| {
                        stats.refetch();
                        on_change.run(());
                    })
                />
            </div>
            <Loaded value=stats what="the flow" view=|s| view! { <Numbers stats=s /> } />
            <DeadLetters
                flow_id=flow_id.clone()
                versions=versions.clone()
                finished=changed.into()
                selected=selected
            />
            <TryVersion flow_id=flow_id.clone() versions=versions selected=selected on_use=on_use_version />
        </section>
    }
}

#[component]
fn Numbers(stats: FlowStats) -> impl IntoView {
    let counter = |label: &'static str, value: String| {
        view! {
            <div class="rounded border border-slate-200 p-3">
                <dt class="text-xs uppercase tracking-wide text-slate-500">{label}</dt>
                <dd class="text-xl font-semibold" data-testid=format!("stat-{}", label.to_lowercase().replace(' ', "-"))>{value}</dd>
            </div>
        }
    };
    view! {
        <p class="mt-1 text-sm">"State: " <span data-testid="flow-state">{stats.state.clone()}</span></p>

        <dl class="mt-1 grid grid-cols-[auto_1fr] gap-x-3 text-sm">
            <dt class="text-slate-500">"Consumer group"</dt>
            <dd class="font-mono text-xs break-all" data-testid="flow-group">
                {stats.consumer_group.clone().unwrap_or_else(|| "–".into())}
            </dd>
            <dt class="text-slate-500">"Ordering"</dt>
            <dd data-testid="flow-ordering">
                {match (stats.ordering, stats.concurrency) {
                    (Some(ordering), Some(concurrency)) => {
                        match stats.batching.and_then(Batching::summary) {
                            Some(batches) => format!("{}; {batches}", ordering.summary(concurrency)),
                            None => ordering.summary(concurrency),
                        }
                    }
                    _ => "–".to_owned(),
                }}
            </dd>
            <dt class="text-slate-500">"Partitions here"</dt>
            <dd data-testid="flow-partitions">
                {if stats.partitions.is_empty() {
                    "none".to_owned()
                } else {
                    stats.partitions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                }}
            </dd>
        </dl>
        <dl class="mt-3 grid grid-cols-2 gap-3 sm:grid-cols-6">
            {counter("Consumed", stats.consumed.to_string())}
            {counter("Succeeded", stats.succeeded.to_string())}
            {counter("Failed", stats.failed.to_string())}
            {counter("Dead-lettered", stats.dead_lettered.to_string())}
            {counter("Retries", stats.retries.to_string())}
            {counter("Lag", stats.lag.map(|l| l.to_string()).unwrap_or_else(|| "–".into()))}
        </dl>
        <h3 class="mt-4 font-semibold">"Last errors"</h3>
        {if stats.last_errors.is_empty() {
            view! { <p class="text-sm text-slate-600">"No errors."</p> }.into_any()
        } else {
            view! {
                <ul class="mt-1 space-y-1 text-sm" aria-label="Last errors">
                    {stats.last_errors.iter().map(|e| view! {
                        <li>
                            <span class="font-mono text-xs">{QueuedMessage::position(e.queued.as_ref(), e.partition, e.offset)}</span>
                            " — " {e.message.clone()}
                            {e.dead_lettered.then_some(" (sent to the Dead Letter Queue)")}
                        </li>
                    }).collect_view()}
                </ul>
            }
            .into_any()
        }}
        {(stats.failures_kept > 0 || stats.failures_dropped > 0).then(|| {
            let noun = if stats.failures_kept == 1 { "failed message" } else { "failed messages" };
            let summary = if stats.failures_dropped > 0 {
                format!(
                    "{} {noun} kept by the flow; {} older ones were dropped.",
                    stats.failures_kept, stats.failures_dropped
                )
            } else {
                format!("{} {noun} kept by the flow.", stats.failures_kept)
            };
            view! { <p class="mt-3 text-sm text-slate-600" data-testid="failures-kept">{summary}</p> }
        })}
        <Replays replays=stats.replays.clone() />
        <h3 class="mt-4 font-semibold">"Recent runs"</h3>
        {if stats.recent_runs.is_empty() {
            view! { <p class="text-sm text-slate-600">"No runs yet."</p> }.into_any()
        } else {
            view! {
                <table class="mt-1 w-full text-left text-xs" aria-label="Recent runs">
                    <thead class="text-slate-500">
                        <tr>
                            <th scope="col" class="py-1">"Message"</th>
                            <th scope="col" class="py-1">"Version"</th>
                            <th scope="col" class="py-1">"Outcome"</th>
                            <th scope="col" class="py-1 text-right">"Latency"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {stats.recent_runs.iter().take(15).map(|r| view! {
                            <tr class="border-t border-slate-100">
                                <td class="py-1 font-mono">{QueuedMessage::position(r.queued.as_ref(), r.partition, r.offset)}</td>
                                <td class="py-1">{r.version.clone()}</td>
                                <td class="py-1">{r.outcome.as_str()}</td>
                                <td class="py-1 text-right">{format!("{} ms", r.latency_ms)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }
            .into_any()
        }}
    }
}
