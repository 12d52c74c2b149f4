//! The **Dead letters** section of a flow's monitor: the messages the flow
//! could not process, newest first, with filters, and **Replay**.

use std::collections::BTreeSet;

use leptos::prelude::*;

use crate::components::style;

use crate::api::{list_dead_letters, replay_dead_letters, try_version};
use crate::components::{
    Dialog, ErrorNotice, Loaded, Pager, Submit, SuccessNotice, current_page, first_page,
};
use crate::domain::{
    AppError, DeadLetter, DeadLetterPage, DeadLetterQuery, DryRun, DryRunRequest, DrySample,
    FAILURE_KINDS, MAX_DRY_RUN, ReplayProgress, diff_lines,
};

/// What a replay is asked for.
#[derive(Clone)]
enum Chosen {
    /// These letters, by id.
    Letters(Vec<String>),
    /// Every letter that matches the filter.
    Matching(DeadLetterQuery),
}

/// The dead letters of one flow. `finished` changes whenever one of the
/// flow's replays ends, so the list shows how its letters went.
#[component]
pub fn DeadLetters(
    flow_id: String,
    versions: Vec<String>,
    finished: Signal<usize>,
    /// The letters chosen, by id (shared with **Try a version**).
    selected: RwSignal<BTreeSet<String>>,
) -> impl IntoView {
    let kind = RwSignal::new(String::new());
    let version = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());
    let applied = RwSignal::new(DeadLetterQuery::default());
    let pages = first_page();
    let refresh = RwSignal::new(0u32);
    let replaying = RwSignal::new(None::<Chosen>);
    let notice = RwSignal::new(None::<String>);
    let page = LocalResource::new({
        let flow_id = flow_id.clone();
        move || {
            refresh.track();
            finished.track();
            let query = DeadLetterQuery {
                cursor: current_page(pages),
                ..applied.get()
            };
            list_dead_letters(flow_id.clone(), query)
        }
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let given = |s: RwSignal<String>| {
            Some(s.get_untracked().trim().to_owned()).filter(|t| !t.is_empty())
        };
        applied.set(DeadLetterQuery {
            kind: given(kind),
            version: given(version),
            search: given(search),
            cursor: None,
            kept: applied.get_untracked().kept,
        });
        pages.set(vec![None]);
        selected.set(BTreeSet::new());
    };
    let versions_for_filter = versions.clone();
    view! {
        <section aria-label="Dead letters" class="mt-4">
            <div class="flex items-center justify-between">
                <h3 class="font-semibold">"Dead letters"</h3>
                <button
                    type="button"
                    class="rounded border border-slate-300 px-2 py-1 text-xs"
                    on:click=move |_| refresh.update(|n| *n += 1)
                >
                    "Refresh"
                </button>
            </div>
            {move || notice.get().map(|m| view! { <div class="mt-2"><SuccessNotice message=m /></div> })}
            <form class="mt-2 flex flex-wrap items-end gap-2 text-sm" on:submit=apply aria-label="Filter dead letters">
                <label class="flex flex-col">
                    <span class="text-xs text-slate-500">"Error kind"</span>
                    <select
                        class="rounded border border-slate-300 px-2 py-1"
                        prop:value=move || kind.get()
                        on:change=move |ev| kind.set(event_target_value(&ev))
                    >
                        <option value="">"Any"</option>
                        {FAILURE_KINDS.iter().map(|k| view! { <option value=*k>{*k}</option> }).collect_view()}
                    </select>
                </label>
                <label class="flex flex-col">
                    <span class="text-xs text-slate-500">"Version"</span>
                    <select
                        class="rounded border border-slate-300 px-2 py-1"
                        prop:value=move || version.get()
                        on:change=move |ev| version.set(event_target_value(&ev))
                    >
                        <option value="">"Any"</option>
                        {versions_for_filter.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label class="flex flex-col">
                    <span class="text-xs text-slate-500">"Error contains"</span>
                    <input
                        type="search"
                        class="rounded border border-slate-300 px-2 py-1"
                        prop:value=move || search.get()
                        on:input=move |ev| search.set(event_target_value(&ev))
                    />
                </label>
                <button type="submit" class=style::BUTTON_SMALL>"Filter"</button>
            </form>
            <Loaded value=page what="the dead letters" view=move |page: DeadLetterPage| {
                let showing_kept = page.kept;
                let from = match &page.dlq_topic {
                    Some(topic) => format!("From the Dead Letter Queue {topic}, newest first."),
                    None if showing_kept => "Kept by the flow besides its Dead Letter Queue, newest first.".to_owned(),
                    None => "Kept by the flow (it has no Dead Letter Queue), newest first.".to_owned(),
                };
                // A flow with a Dead Letter Queue may keep failures besides:
                // one button shows them, another goes back.
                let besides = page.kept_besides;
                let switch = move |kept: bool| {
                    applied.update(|q| q.kept = kept);
                    pages.set(vec![None]);
                    selected.set(BTreeSet::new());
                };
                let other_source = if showing_kept {
                    Some(view! {
                        <button type="button" class=style::BUTTON_SMALL on:click=move |_| switch(false)>
                            "Show the Dead Letter Queue"
                        </button>
                    }.into_any())
                } else if besides > 0 {
                    let noun = if besides == 1 { "failure" } else { "failures" };
                    Some(view! {
                        <button type="button" class=style::BUTTON_SMALL on:click=move |_| switch(true)>
                            {format!("Show the {besides} {noun} kept by the flow")}
                        </button>
                    }.into_any())
                } else {
                    None
                };
                let ids: Vec<String> = page.letters.iter().map(|l| l.id.clone()).collect();
                let next = page.next.clone();
                let empty = page.letters.is_empty();
                view! {
                    <div class="mt-2 flex flex-wrap items-center gap-2">
                        <p class="text-xs text-slate-600" data-testid="dead-letters-source">{from}</p>
                        {other_source}
                    </div>
                    {page.read_first.map(|n| view! {
                        <p class="mt-1 text-xs text-amber-700" data-testid="dead-letters-partial">
                            {format!("Only the first {n} messages of the queue were read: letters further down are not listed.")}
                        </p>
                    })}
                    {empty.then(|| view! {
                        <p class="mt-1 text-sm text-slate-600" data-testid="no-dead-letters">"No dead letters match."</p>
                    })}
                    {(!empty).then(move || {
                        view! {
                            <div class="mt-2 flex flex-wrap items-center gap-2 text-sm">
                                <label class="flex items-center gap-1">
                                    <input
                                        type="checkbox"
                                        aria-label="Select every dead letter on this page"
                                        prop:checked={
                                            let ids = ids.clone();
                                            move || selected.with(|s| ids.iter().all(|id| s.contains(id)))
                                        }
                                        on:change={
                                            let ids = ids.clone();
                                            move |ev| {
                                                let on = event_target_checked(&ev);
                                                selected.update(|s| for id in &ids {
                                                    if on { s.insert(id.clone()); } else { s.remove(id); }
                                                });
                                            }
                                        }
                                    />
                                    "All on this page"
                                </label>
                                <button
                                    type="button"
                                    class="rounded bg-blue-700 px-3 py-1 text-white disabled:opacity-50"
                                    disabled=move || selected.with(BTreeSet::is_empty)
                                    on:click=move |_| replaying.set(Some(Chosen::Letters(selected.get().into_iter().collect())))
                                >
                                    {move || format!("Replay selected ({})", selected.with(BTreeSet::len))}
                                </button>
                                <button
                                    type="button"
                                    class=style::BUTTON_SMALL
                                    on:click=move |_| replaying.set(Some(Chosen::Matching(applied.get())))
                                >
                                    "Replay all that match"
                                </button>
                            </div>
                            <ul class="mt-2 space-y-2 text-sm" aria-label="Dead letter list">
                                {page.letters.into_iter().map(|letter| view! { <Letter letter=letter selected=selected /> }).collect_view()}
                            </ul>
                        }
                    })}
                    <Pager pages=pages older=next />
                }
            } />
            {
                let (flow_id, versions) = (flow_id.clone(), versions.clone());
                move || replaying.get().map(|chosen| view! {
                    <ReplayDialog
                        flow_id=flow_id.clone()
                        versions=versions.clone()
                        chosen=chosen
                        on_close=Callback::new(move |_| replaying.set(None))
                        on_done=Callback::new(move |message: String| {
                            replaying.set(None);
                            selected.set(BTreeSet::new());
                            notice.set(Some(message));
                            refresh.update(|n| *n += 1);
                        })
                    />
                })
            }
        </section>
    }
}

/// One dead letter.
#[component]
fn Letter(letter: DeadLetter, selected: RwSignal<BTreeSet<String>>) -> impl IntoView {
    let id = letter.id.clone();
    let label = format!(
        "Select the dead letter of partition {} offset {}",
        letter.partition, letter.offset
    );
    view! {
        <li class="rounded border border-slate-200 p-2" data-testid="dead-letter">
            <div class="flex items-start gap-2">
                <input
                    type="checkbox"
                    class="mt-1"
                    aria-label=label
                    prop:checked={
                        let id = id.clone();
                        move || selected.with(|s| s.contains(&id))
                    }
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selected.update(|s| {
                            if on { s.insert(id.clone()); } else { s.remove(&id); }
                        });
                    }
                />
                <div class="min-w-0 flex-1">
                    <div class="font-mono text-xs text-slate-600">
                        {format!(
                            "{} · partition {} offset {} · version {} · {} · {} attempt{}",
                            letter.at, letter.partition, letter.offset, letter.version, letter.kind,
                            letter.attempts, if letter.attempts == 1 { "" } else { "s" }
                        )}
                    </div>
                    <div data-testid="dead-letter-error">{letter.message.clone()}</div>
                    {letter.replayed.clone().map(|r| view! {
                        <div class="text-xs font-medium text-blue-800" data-testid="dead-letter-replayed">{r}</div>
                    })}
                    {letter.replay_of.clone().map(|r| view! {
                        <div class="text-xs text-slate-600">"A replay of " <span class="font-mono">{r}</span></div>
                    })}
                    {letter.key.clone().map(|key| view! {
                        <div class="font-mono text-xs">"Key: " {key}</div>
                    })}
                    <pre class="mt-1 max-h-48 overflow-auto whitespace-pre-wrap break-all bg-slate-50 p-1 text-xs">{letter.value.clone()}</pre>
                    {letter.value_cut.then(|| view! {
                        <div class="text-xs text-slate-600">
                            {format!("The first part of {} bytes.", letter.value_bytes)}
                        </div>
                    })}
                    {letter.position.clone().map(|p| view! {
                        <div class="text-xs text-slate-500">{format!("On the Dead Letter Queue at {p}.")}</div>
                    })}
                </div>
            </div>
        </li>
    }
}

/// Asks for the version to replay with, then starts the replay.
#[component]
fn ReplayDialog(
    flow_id: String,
    versions: Vec<String>,
    chosen: Chosen,
    on_close: Callback<()>,
    on_done: Callback<String>,
) -> impl IntoView {
    let version = RwSignal::new(String::new());
    let what = match &chosen {
        Chosen::Letters(ids) if ids.len() == 1 => "the selected dead letter".to_owned(),
        Chosen::Letters(ids) => format!("the {} selected dead letters", ids.len()),
        Chosen::Matching(_) => "every dead letter that matches the filter".to_owned(),
    };
    let replay = Submit::new(
        move |()| {
            let v = version.get_untracked();
            let request = crate::domain::ReplayRequest {
                flow_id: flow_id.clone(),
                version: Some(v).filter(|v| !v.is_empty()),
                letters: match &chosen {
                    Chosen::Letters(ids) => ids.clone(),
                    Chosen::Matching(_) => Vec::new(),
                },
                matching: match &chosen {
                    Chosen::Matching(query) => Some(DeadLetterQuery {
                        cursor: None,
                        ..query.clone()
                    }),
                    Chosen::Letters(_) => None,
                },
            };
            replay_dead_letters(request)
        },
        move |_| on_done.run("Replay started. Its progress shows under Replays.".to_owned()),
    );
    let (error, pending) = (replay.error, replay.pending());
    view! {
        <Dialog title="Replay dead letters".to_owned() on_close=on_close>
            <p class="text-sm">{format!("Runs {what} again, like new messages: outputs are published with their original key and headers, and what fails again goes back to the dead letters.")}</p>
            <label class="mt-3 flex flex-col text-sm">
                <span class="font-medium">"Version"</span>
                <select
                    class="mt-1 rounded border border-slate-300 px-2 py-1"
                    prop:value=move || version.get()
                    on:change=move |ev| version.set(event_target_value(&ev))
                >
                    <option value="">"The flow's version"</option>
                    {versions.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                </select>
            </label>
            {move || error.get().map(|e| view! { <div class="mt-3"><ErrorNotice message=e.to_string() /></div> })}
            <div class="mt-6 flex justify-end gap-3">
                <button
                    type="button"
                    class=style::BUTTON_SECONDARY
                    on:click=move |_| on_close.run(())
                >
                    "Cancel"
                </button>
                <button
                    type="button"
                    class=style::BUTTON_PRIMARY
                    disabled=move || pending.get()
                    on:click=move |_| replay.run(())
                >
                    {move || if pending.get() { "Starting…" } else { "Replay" }}
                </button>
            </div>
        </Dialog>
    }
}

/// The flow's newest replays with their progress.
#[component]
pub fn Replays(replays: Vec<ReplayProgress>) -> impl IntoView {
    if replays.is_empty() {
        return ().into_any();
    }
    view! {
        <h3 class="mt-4 font-semibold">"Replays"</h3>
        <ul class="mt-1 space-y-1 text-sm" aria-label="Replays">
            {replays.into_iter().map(|r| {
                let total = r.succeeded + r.failed + r.left;
                view! {
                    <li data-testid="replay">
                        <span class="font-mono text-xs">{format!("{} · version {} · by {}", r.at, r.version, r.by)}</span>
                        " — "
                        <span data-testid="replay-state">{r.state.clone()}</span>
                        {format!(": {} succeeded, {} failed again, {} left of {total}", r.succeeded, r.failed, r.left)}
                        {r.message.clone().map(|m| format!(" ({m})"))}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}

/// **Try a version**: runs another version on the newest messages or the
/// selected dead letters beside the flow's own, and shows them side by
/// side. Nothing is published.
#[component]
pub fn TryVersion(
    flow_id: String,
    versions: Vec<String>,
    selected: RwSignal<BTreeSet<String>>,
    on_use: Callback<String>,
) -> impl IntoView {
    let version = RwSignal::new(versions.first().cloned().unwrap_or_default());
    let source = RwSignal::new("recent".to_owned());
    let count = RwSignal::new("20".to_owned());
    let result = RwSignal::new(None::<DryRun>);
    let dry_run = Submit::new(try_version, move |run| result.set(Some(run)));
    let (error, pending) = (dry_run.error, dry_run.pending());
    let run = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let sample = if source.get_untracked() == "letters" {
            DrySample::Letters(selected.get_untracked().into_iter().collect())
        } else {
            match count.get_untracked().trim().parse::<u32>() {
                Ok(n) if (1..=MAX_DRY_RUN).contains(&n) => DrySample::Recent(n),
                _ => {
                    error.set(Some(AppError::validation(
                        "count",
                        format!("Enter a number of messages from 1 to {MAX_DRY_RUN}."),
                    )));
                    return;
                }
            }
        };
        dry_run.run(DryRunRequest {
            flow_id: flow_id.clone(),
            version: version.get_untracked(),
            sample,
        });
    };
    view! {
        <section aria-label="Try a version" class="mt-6">
            <h3 class="font-semibold">"Try a version"</h3>
            <p class="text-xs text-slate-600">"Runs another version beside the flow's own, without publishing anything or moving the flow's place."</p>
            <form class="mt-2 flex flex-wrap items-end gap-2 text-sm" on:submit=run>
                <label class="flex flex-col">
                    <span class="text-xs text-slate-500">"Candidate version"</span>
                    <select
                        class="rounded border border-slate-300 px-2 py-1"
                        prop:value=move || version.get()
                        on:change=move |ev| version.set(event_target_value(&ev))
                    >
                        {versions.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label class="flex flex-col">
                    <span class="text-xs text-slate-500">"On"</span>
                    <select
                        class="rounded border border-slate-300 px-2 py-1"
                        prop:value=move || source.get()
                        on:change=move |ev| source.set(event_target_value(&ev))
                    >
                        <option value="recent">"The newest messages"</option>
                        <option value="letters">{move || format!("The selected dead letters ({})", selected.with(BTreeSet::len))}</option>
                    </select>
                </label>
                {move || (source.get() == "recent").then(|| view! {
                    <label class="flex flex-col">
                        <span class="text-xs text-slate-500">"How many"</span>
                        <input
                            type="number"
                            min="1"
                            max=MAX_DRY_RUN.to_string()
                            class="w-24 rounded border border-slate-300 px-2 py-1"
                            prop:value=move || count.get()
                            on:input=move |ev| count.set(event_target_value(&ev))
                        />
                    </label>
                })}
                <button
                    type="submit"
                    class="rounded bg-blue-700 px-3 py-1 text-white disabled:opacity-50"
                    disabled=move || pending.get()
                >
                    {move || if pending.get() { "Running…" } else { "Run" }}
                </button>
            </form>
            {move || error.get().map(|e| view! { <div class="mt-2"><ErrorNotice message=e.to_string() /></div> })}
            {move || result.get().map(|run| {
                let candidate = run.version.clone();
                view! {
                    <div class="mt-3 flex flex-wrap items-center gap-3 text-sm">
                        <p data-testid="dry-run-summary">
                            {format!(
                                "{} same, {} different, {} failed ({} against {}).",
                                run.same, run.different, run.failed, run.version, run.current_version
                            )}
                        </p>
                        <button
                            type="button"
                            class=style::BUTTON_SMALL
                            on:click=move |_| on_use.run(candidate.clone())
                        >
                            "Use this version"
                        </button>
                    </div>
                    <ul class="mt-2 space-y-2 text-xs" aria-label="Comparisons">
                        {run.comparisons.into_iter().map(|c| {
                            let verdict = c.verdict();
                            let (current, candidate) = (side(&c.current), side(&c.candidate));
                            let (left, right) = diff_lines(&current, &candidate);
                            view! {
                                <li class="rounded border border-slate-200 p-2" data-testid="comparison">
                                    <div class="font-mono text-slate-600">
                                        {format!("partition {} offset {} · ", c.partition, c.offset)}
                                        <span data-testid="comparison-verdict" class=match verdict {
                                            "same" => "text-green-800",
                                            "failed" => "text-red-800",
                                            _ => "text-amber-800",
                                        }>{verdict}</span>
                                    </div>
                                    <pre class="mt-1 max-h-24 overflow-auto whitespace-pre-wrap break-all bg-slate-50 p-1">{c.input}</pre>
                                    <div class="mt-1 grid grid-cols-2 gap-2">
                                        <div>
                                            <div class="text-slate-500">
                                                {format!("{} ({})", run.current_version, if c.current_published { "published" } else { "run now" })}
                                            </div>
                                            <Lines lines=left />
                                        </div>
                                        <div>
                                            <div class="text-slate-500">{run.version.clone()}</div>
                                            <Lines lines=right />
                                        </div>
                                    </div>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }
            })}
        </section>
    }
}

/// An output, or why there is none.
fn side(result: &Result<String, String>) -> String {
    match result {
        Ok(output) => output.clone(),
        Err(why) => format!("failed: {why}"),
    }
}

/// Lines of an output, the ones that differ highlighted.
#[component]
fn Lines(lines: Vec<(String, bool)>) -> impl IntoView {
    view! {
        <pre class="max-h-48 overflow-auto whitespace-pre-wrap break-all bg-slate-50 p-1">
            {lines.into_iter().map(|(line, changed)| view! {
                <span class=if changed { "block bg-amber-100" } else { "block" } data-changed=changed.to_string()>{line}</span>
            }).collect_view()}
        </pre>
    }
}
